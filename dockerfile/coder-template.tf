# Coder template snippet: the parts of a Docker-based template that run workspace-agent.
# Merge into your template (it is not a complete template: networks, images, resources vary).
# The image is dockerfile/Dockerfile. See dockerfile/README.md.

terraform {
  required_providers {
    coder  = { source = "coder/coder" }
    docker = { source = "kreuzwerker/docker" }
  }
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

variable "provisioner_url" {
  description = "Key provisioner base URL, as seen from the workspace"
  type        = string
  default     = "http://key-provisioner:8100"
}

variable "provisioner_secret" {
  description = "Bearer secret of the key provisioner (the only way a workspace gets a LiteLLM key)"
  type        = string
  sensitive   = true
}

variable "ai_gateway_url" {
  description = "LiteLLM proxy base URL, as seen from the workspace"
  type        = string
  default     = "http://litellm:4000"
}

# Values must be keys of settings/models.toml (or LiteLLM names listed there).
data "coder_parameter" "ai_model" {
  name         = "ai_model"
  display_name = "AI model"
  type         = "string"
  default      = "claude-sonnet"
  mutable      = true
  option {
    name  = "Claude Sonnet 4.5"
    value = "claude-sonnet"
  }
  option {
    name  = "Claude Haiku 4.5"
    value = "claude-haiku"
  }
  option {
    name  = "Claude Opus 4"
    value = "claude-opus"
  }
}

data "coder_parameter" "ai_assistant" {
  name         = "ai_assistant"
  display_name = "AI assistant"
  description  = "Which AI clients to configure (Roo Code's settings are kept for existing users; the image ships Zoo Code). The lockdown of Copilot, Cody and Coder's own AI applies in every case."
  type         = "string"
  default      = "both"
  mutable      = true
  option {
    name  = "Roo Code, Zoo Code and OpenCode"
    value = "both"
  }
  option {
    name  = "Roo Code, Zoo Code, OpenCode and Claude Code"
    value = "all"
  }
  option {
    name  = "Roo Code and Zoo Code"
    value = "roo-code"
  }
  option {
    name  = "Zoo Code"
    value = "zoo-code"
  }
  option {
    name  = "OpenCode"
    value = "opencode"
  }
  option {
    name  = "Claude Code"
    value = "claude-code"
  }
  option {
    name  = "None"
    value = "none"
  }
}

# Set by an admin when the workspace is created; users cannot change it later.
data "coder_parameter" "enforcement_level" {
  name         = "enforcement_level"
  display_name = "Enforcement level"
  type         = "string"
  default      = "standard"
  mutable      = false
  option {
    name  = "Standard"
    value = "standard"
  }
  option {
    name  = "Design first"
    value = "design-first"
  }
  option {
    name  = "Unrestricted"
    value = "unrestricted"
  }
}

resource "coder_agent" "main" {
  arch = "amd64"
  os   = "linux"

  # Everything workspace-agent reads (workspace-agent --help lists each variable). With drift
  # reporting (coder-drift.tf next to this file): env = merge({ …this map… }, local.drift_env).
  env = {
    CODER_WORKSPACE_ID    = data.coder_workspace.me.id
    CODER_WORKSPACE_NAME  = data.coder_workspace.me.name
    CODER_WORKSPACE_OWNER = data.coder_workspace_owner.me.name
    AI_MODEL              = data.coder_parameter.ai_model.value
    AI_ASSISTANT          = data.coder_parameter.ai_assistant.value
    ENFORCEMENT_LEVEL     = data.coder_parameter.enforcement_level.value
    AI_GATEWAY_URL        = var.ai_gateway_url
    PROVISIONER_URL       = var.provisioner_url
    PROVISIONER_SECRET    = var.provisioner_secret
  }

  # At every start (the home volume persists, the image does not): bootstrap first, then the
  # editor. code-server starts even if bootstrap failed (the last good settings are on the
  # volume), and the script then exits with bootstrap's code so Coder shows the failure.
  startup_script = <<-EOT
    #!/bin/sh
    set -u
    rc=0
    workspace-agent bootstrap --report || rc=$?   # --report: only sends when DRIFT_SERVER_URL is set
    # Next to code-server for the workspace's life: a changed locked value is put back within 1 s.
    workspace-agent watch >/tmp/workspace-agent-watch.log 2>&1 &
    # Zoo Code (Roo Code's continuation) unless the user already has it; a Roo Code they installed
    # themselves keeps working too (bootstrap configures both).
    if ! code-server --list-extensions 2>/dev/null | grep -qix 'zoocodeorganization.zoo-code'; then
      code-server --install-extension /opt/workspace-image/zoo-code.vsix || rc=1
    fi
    code-server --auth none --bind-addr 127.0.0.1:13337 --disable-telemetry --disable-update-check \
      >/tmp/code-server.log 2>&1 &
    exit $rc
  EOT

  # One line in the dashboard from the last bootstrap/check (reads two small files, no network).
  # The scheduled `workspace-agent check --report` is coder-drift.tf's coder_script.
  metadata {
    display_name = "AI setup"
    key          = "0_ai_setup"
    script       = "workspace-agent status --short"
    interval     = 10
    timeout      = 5
  }
}

resource "coder_app" "code_server" {
  agent_id     = coder_agent.main.id
  slug         = "code-server"
  display_name = "code-server"
  url          = "http://localhost:13337/?folder=/home/coder"
  icon         = "/icon/code.svg"
  subdomain    = false
  share        = "owner"
  healthcheck {
    url       = "http://localhost:13337/healthz"
    interval  = 5
    threshold = 6
  }
}

resource "docker_volume" "home" {
  name = "coder-${data.coder_workspace.me.id}-home"
  lifecycle {
    ignore_changes = all
  }
}

resource "docker_container" "workspace" {
  count    = data.coder_workspace.me.start_count
  image    = "workspace:4.139.1" # built from dockerfile/Dockerfile
  name     = "coder-${data.coder_workspace_owner.me.name}-${lower(data.coder_workspace.me.name)}"
  hostname = data.coder_workspace.me.name
  # The Coder agent is the container's process; it runs startup_script above.
  entrypoint = ["sh", "-c", replace(coder_agent.main.init_script, "/localhost|127\\.0\\.0\\.1/", "host.docker.internal")]
  env        = ["CODER_AGENT_TOKEN=${coder_agent.main.token}"]
  host {
    host = "host.docker.internal"
    ip   = "host-gateway"
  }
  volumes {
    container_path = "/home/coder"
    volume_name    = docker_volume.home.name
    read_only      = false
  }
}

# Key lifecycle (issue 18): revoke the workspace's LiteLLM key as soon as the workspace is deleted.
# Best effort, because the key provisioner's reconcile loop revokes it anyway within one period
# (KEY_PROVISIONER_RECONCILE_INTERVAL_S) once Coder answers 410 Gone for the workspace.
#
# What Coder offers: no webhook on deletion; a delete is a workspace build with transition
# "delete" (data.coder_workspace.me.transition), which Terraform runs as a destroy. A resource
# without start_count lives from the first build to the delete build, so its destroy-time
# provisioner runs exactly then (stop/start builds keep it), on the Coder provisioner daemon, not
# in the workspace. Such a provisioner may only read `self`, so the URL and the id travel in
# `input`. The secret does not (it would sit in the Terraform state and the template): the daemon's
# environment must have KEY_PROVISIONER_REVOKE_SECRET (Coder strips only CODER_* variables from
# Terraform's environment) and curl. The provisioner revokes only when Coder itself says this
# workspace is being deleted or gone, so a misfire (e.g. this resource removed from the template)
# ends no live workspace's key; the delete build never fails because of it (on_failure = continue).
variable "key_provisioner_url_from_coder" {
  description = "The key provisioner's base URL as the Coder provisioner daemon reaches it (the delete hook); empty: no hook, the reconcile loop alone revokes"
  type        = string
  default     = ""
}

resource "terraform_data" "revoke_key_on_delete" {
  count = var.key_provisioner_url_from_coder == "" ? 0 : 1
  input = {
    url          = var.key_provisioner_url_from_coder
    workspace_id = data.coder_workspace.me.id
  }
  provisioner "local-exec" {
    when       = destroy
    on_failure = continue
    # The secret goes to curl on stdin (printf is a shell builtin), never on a command line.
    command = "printf 'header = \"Authorization: Bearer %s\"\\n' \"$KEY_PROVISIONER_REVOKE_SECRET\" | curl -fsS -m 10 --retry 2 -K - -X POST '${self.input.url}/api/v1/keys/workspace/${self.input.workspace_id}/revoke'"
  }
}
