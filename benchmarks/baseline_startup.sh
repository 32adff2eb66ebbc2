#!/usr/bin/env bash
# The baseline: what the platform's Coder startup_script does today for AI setup, rewritten from
# the behaviour described in shared/reference/platform.md ("What the platform's startup script
# does today") so that `python -m benchmarks` can time it against `workspace-agent bootstrap`
# doing the same work. Its flaws are kept on purpose (they are part of what it costs and does):
#   - the provisioner request body is built by string interpolation (a quote in a name breaks it)
#     and the answer is parsed by two `python3 -c` calls;
#   - up to 3 attempts, 5 s apart; failures are only an `echo WARNING`;
#   - the Roo Code import file and the OpenCode files are overwritten at every start with an
#     inline key and an embedded (drifted) copy of the enforcement prompt;
#   - ~/.bashrc gets the key in plain text and two aliases appended at every start;
#   - the lockdown is baked into the image, so nothing here touches settings or extensions.
# Only difference: the provisioner URL can be given (PROVISIONER_URL) so it can be a loopback
# stand-in; the template hard-codes http://key-provisioner:8100.
set -u

AI_ASSISTANT="${AI_ASSISTANT:-both}"
LITELLM_KEY="${LITELLM_API_KEY:-}"
AI_MODEL="${AI_MODEL:-claude-sonnet}"
AI_GATEWAY_URL="${AI_GATEWAY_URL:-http://litellm:4000}"
ENFORCEMENT_LEVEL="${ENFORCEMENT_LEVEL:-standard}"
PROVISIONER_URL="${PROVISIONER_URL:-http://key-provisioner:8100}"

if [ "$AI_ASSISTANT" = "none" ]; then
  echo "AI assistant disabled"
  exit 0
fi

case "$AI_MODEL" in
  claude-sonnet) LITELLM_MODEL="claude-sonnet-4-5" ;;
  claude-haiku)  LITELLM_MODEL="claude-haiku-4-5" ;;
  claude-opus)   LITELLM_MODEL="claude-opus-4" ;;
  *)             LITELLM_MODEL="claude-sonnet-4-5" ;;
esac

if [ -z "$LITELLM_KEY" ]; then
  echo "Asking the key provisioner for this workspace's key..."
  RESPONSE=""
  for attempt in 1 2 3; do
    RESPONSE=$(curl -sf -X POST "$PROVISIONER_URL/api/v1/keys/workspace" \
      -H "Authorization: Bearer ${PROVISIONER_SECRET:-}" \
      -H "Content-Type: application/json" \
      -d "{\"workspace_id\": \"${CODER_WORKSPACE_ID:-}\", \"username\": \"${CODER_WORKSPACE_OWNER:-}\", \"workspace_name\": \"${CODER_WORKSPACE_NAME:-}\", \"enforcement_level\": \"$ENFORCEMENT_LEVEL\"}" \
      2>/dev/null) && break
    RESPONSE=""
    echo "Key provisioner not answering (attempt $attempt of 3); trying again in 5 s"
    [ "$attempt" -lt 3 ] && sleep 5
  done
  if [ -n "$RESPONSE" ]; then
    LITELLM_KEY=$(printf '%s' "$RESPONSE" | python3 -c "import json, sys; print(json.load(sys.stdin).get('key', ''))" 2>/dev/null || echo "")
    if [ -n "$LITELLM_KEY" ]; then
      REUSED=$(printf '%s' "$RESPONSE" | python3 -c "import json, sys; print(json.load(sys.stdin).get('reused', False))" 2>/dev/null || echo "")
      echo "Got the workspace key (reused=$REUSED)"
    else
      echo "WARNING: the key provisioner answered without a key"
    fi
  else
    echo "WARNING: the key provisioner could not be reached after 3 attempts"
  fi
fi

if [ -z "$LITELLM_KEY" ]; then
  echo "WARNING: no AI key; Roo Code and OpenCode are not configured"
  exit 0
fi

case "$ENFORCEMENT_LEVEL" in
  standard)
    INSTRUCTIONS="Work like a careful engineer: say what you will change and why before you change it, follow the existing code's patterns, keep changes small, and explain each modification."
    ;;
  design-first)
    INSTRUCTIONS="DESIGN FIRST: before any code, propose a design (problem, approach, files, tradeoffs) and wait for a yes. No code in the same answer as the proposal. Tiny fixes are exempt but need a one-line reason."
    ;;
  *)
    INSTRUCTIONS=""
    ;;
esac

if [ "$AI_ASSISTANT" = "roo-code" ] || [ "$AI_ASSISTANT" = "both" ]; then
  mkdir -p "$HOME/.config/roo-code"
  cat > "$HOME/.config/roo-code/settings.json" <<ROO
{
  "providerProfiles": {
    "currentApiConfigName": "litellm",
    "apiConfigs": {
      "litellm": {
        "apiProvider": "openai",
        "openAiBaseUrl": "$AI_GATEWAY_URL/v1",
        "openAiApiKey": "$LITELLM_KEY",
        "openAiModelId": "$LITELLM_MODEL",
        "id": "litellm-default"
      }
    }
  },
  "globalSettings": {
    "customInstructions": "$INSTRUCTIONS"
  }
}
ROO
  echo "Roo Code configured: model=$LITELLM_MODEL enforcement=$ENFORCEMENT_LEVEL"
fi

if [ "$AI_ASSISTANT" = "opencode" ] || [ "$AI_ASSISTANT" = "both" ]; then
  if [ -x "$HOME/.opencode/bin/opencode" ]; then
    mkdir -p "$HOME/.config/opencode"
    INSTRUCTIONS_LINE=""
    if [ "$ENFORCEMENT_LEVEL" != "unrestricted" ]; then
      if [ "$ENFORCEMENT_LEVEL" = "design-first" ]; then
        cat > "$HOME/.config/opencode/enforcement.md" <<'MD'
## Design first

Before writing code, present a design proposal:

- the problem, in your words
- the approach (data flow, main pieces)
- the files you will create or change
- alternatives and tradeoffs, risks and assumptions

Then ask whether to go ahead, and do not write code until the answer is yes. Implement in
small steps that follow the agreed design; if it has to change, stop and propose the change.
Typos, formatting and one-line fixes are exempt but still get a short explanation. Ask when
the context is not enough.
MD
      else
        cat > "$HOME/.config/opencode/enforcement.md" <<'MD'
## How to work here

1. Understand the problem before writing code.
2. Say what you plan to change and why.
3. Read the surrounding code and follow its patterns.
4. Prefer small, focused changes to rewrites.
5. Think about errors and edge cases.
6. Choose the simplest thing that works.

Explain every change you make to existing code.
MD
      fi
      INSTRUCTIONS_LINE="\"instructions\": [\"$HOME/.config/opencode/enforcement.md\"],"
    fi
    cat > "$HOME/.config/opencode/opencode.json" <<OC
{
  "\$schema": "https://opencode.ai/config.json",
  $INSTRUCTIONS_LINE
  "provider": {
    "litellm": {
      "npm": "@ai-sdk/openai-compatible",
      "name": "LiteLLM",
      "options": {
        "baseURL": "$AI_GATEWAY_URL/v1",
        "apiKey": "$LITELLM_KEY"
      },
      "models": {
        "claude-sonnet-4-5": { "name": "Claude Sonnet 4.5" },
        "claude-haiku-4-5": { "name": "Claude Haiku 4.5" },
        "claude-opus-4": { "name": "Claude Opus 4" }
      }
    }
  },
  "model": "litellm/$LITELLM_MODEL",
  "small_model": "litellm/claude-haiku-4-5"
}
OC
    echo "OpenCode configured: model=litellm/$LITELLM_MODEL enforcement=$ENFORCEMENT_LEVEL"
  else
    echo "Note: OpenCode is not installed at ~/.opencode/bin/opencode; skipped"
  fi
fi

cat >> "$HOME/.bashrc" <<RC
# AI configuration (LiteLLM)
export PATH="$HOME/.opencode/bin:\$PATH"
export AI_GATEWAY_URL="$AI_GATEWAY_URL"
export OPENAI_API_BASE="$AI_GATEWAY_URL/v1"
export OPENAI_API_KEY="$LITELLM_KEY"
export AI_MODEL="$LITELLM_MODEL"
alias ai-models="echo 'Agent: $AI_ASSISTANT, Model: $LITELLM_MODEL, Gateway: $AI_GATEWAY_URL'"
alias ai-usage="curl -s $AI_GATEWAY_URL/user/info -H 'Authorization: Bearer $LITELLM_KEY' | python3 -m json.tool"
RC
echo "AI environment configured: gateway=$AI_GATEWAY_URL"
