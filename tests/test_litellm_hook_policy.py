"""The enforcement hook's decisions without LiteLLM: levels, prompt bytes, re-reading, placement."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import pytest

from workspace_agent import data
from workspace_agent.litellm_hook.policy import (
    Decision,
    PromptStore,
    PromptUnavailable,
    decide,
    prepend,
    shown,
)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped prompts/ that a test may edit."""
    target = tmp_path / "prompts"
    shutil.copytree(data.data_dir("prompts"), target)
    return target


def test_default_store_reads_the_shipped_prompt_bytes() -> None:
    store = PromptStore()
    for level in ("unrestricted", "standard", "design-first"):
        assert store.get(level) == data.prompt_bytes(level)
    assert store.directory == data.data_dir("prompts")


@pytest.mark.parametrize("level", ["unrestricted", "standard", "design-first"])
def test_a_known_level_gets_its_own_prompt(level: str) -> None:
    decision = decide({"enforcement_level": level, "workspace_id": "ws-1"}, PromptStore())
    assert decision == Decision(level, data.prompt_bytes(level), level, fallback=False)
    if level == "unrestricted":
        assert decision.sha256 is None and decision.header() == "unrestricted"
    else:
        assert decision.sha256 == data.prompt_sha256(level)
        assert decision.header() == f"{level}; sha256={data.prompt_sha256(level)}"


@pytest.mark.parametrize(
    ("metadata", "requested"),
    [
        ({"enforcement_level": "paranoid"}, "paranoid"),
        ({"enforcement_level": "Design-First"}, "Design-First"),
        ({"enforcement_level": ""}, "empty"),
        ({"enforcement_level": 3}, "int"),
        ({"enforcement_level": "x; sha256=00\r\nevil: 1"}, "x__sha256_00__evil__1"),
        ({}, None),
        (None, None),
    ],
)
def test_an_unknown_or_missing_level_gets_the_safest_non_empty_prompt(metadata: object, requested: str | None) -> None:
    decision = decide(metadata, PromptStore())  # type: ignore[arg-type]
    assert decision.level == "design-first"
    assert decision.prompt == data.prompt_bytes("design-first")
    assert decision.fallback is True
    assert decision.requested == requested
    header = decision.header()
    assert header.startswith(f"design-first; sha256={data.prompt_sha256('design-first')}; fallback-from=")
    assert "\r" not in header and "\n" not in header and header.count(";") == 2


def test_fallback_skips_an_emptied_design_first_prompt(prompts: Path) -> None:
    (prompts / "design-first.md").write_bytes(b"")
    decision = decide({"enforcement_level": "nope"}, PromptStore(prompts))
    assert (decision.level, decision.prompt) == ("standard", (prompts / "standard.md").read_bytes())


def test_no_fallback_prompt_at_all_refuses(prompts: Path) -> None:
    (prompts / "design-first.md").write_bytes(b"")
    (prompts / "standard.md").write_bytes(b"")
    with pytest.raises(PromptUnavailable, match="every fallback prompt"):
        decide({"enforcement_level": "nope"}, PromptStore(prompts))


def test_prompt_is_re_read_when_the_file_changes(prompts: Path) -> None:
    store = PromptStore(prompts)
    path = prompts / "standard.md"
    first = store.get("standard")
    path.write_bytes(b"edited by an admin\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later mtime, even on coarse clocks
    assert store.get("standard") == b"edited by an admin\n" != first


def test_prompt_is_not_re_read_while_unchanged(prompts: Path) -> None:
    store = PromptStore(prompts)
    path = prompts / "standard.md"
    before = store.get("standard")
    stat = path.stat()
    path.write_bytes(b"X" * len(before))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime: looks unchanged
    assert store.get("standard") == before  # served from the cache: no read per request


def test_a_prompt_that_disappears_keeps_the_last_good_copy(prompts: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = PromptStore(prompts)
    good = store.get("design-first")
    (prompts / "design-first.md").unlink()
    with caplog.at_level(logging.ERROR, "workspace_agent.litellm_hook"):
        assert store.get("design-first") == good
    assert "serving the last good copy" in caplog.text


def test_a_prompt_edited_into_invalid_utf8_keeps_the_last_good_copy(prompts: Path) -> None:
    store = PromptStore(prompts)
    good = store.get("standard")
    path = prompts / "standard.md"
    path.write_bytes(b"caf\xe9 half-saved")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert store.get("standard") == good
    with pytest.raises(PromptUnavailable, match="cannot be read"):
        PromptStore(prompts).get("standard")  # a fresh gateway has no good copy: it refuses


def test_a_prompt_never_read_and_missing_refuses(prompts: Path) -> None:
    (prompts / "standard.md").unlink()
    with pytest.raises(PromptUnavailable, match="standard.md cannot be read"):
        decide({"enforcement_level": "standard"}, PromptStore(prompts))


def test_chat_gets_a_first_system_message_with_the_exact_bytes() -> None:
    prompt = data.prompt_bytes("design-first")
    request = {"model": "m", "messages": [{"role": "system", "content": "user's own"}, {"role": "user", "content": "hi"}]}
    assert prepend(request, "acompletion", prompt) is True
    assert request["messages"][0] == {"role": "system", "content": prompt.decode("utf-8")}
    assert request["messages"][1:] == [{"role": "system", "content": "user's own"}, {"role": "user", "content": "hi"}]
    assert hashlib.sha256(request["messages"][0]["content"].encode()).hexdigest() == data.prompt_sha256("design-first")


@pytest.mark.parametrize(
    ("system", "expected_tail"),
    [
        (None, None),
        ("be brief", [{"type": "text", "text": "be brief"}]),
        ([{"type": "text", "text": "block"}], [{"type": "text", "text": "block"}]),
    ],
)
def test_anthropic_messages_get_the_prompt_in_front_of_system(system: object, expected_tail: list | None) -> None:
    request: dict = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if system is not None:
        request["system"] = system
    assert prepend(request, "anthropic_messages", b"RULES") is True
    if expected_tail is None:
        assert request["system"] == "RULES"
    else:
        assert request["system"] == [{"type": "text", "text": "RULES"}, *expected_tail]
    assert request["messages"] == [{"role": "user", "content": "hi"}]


def test_responses_api_gets_the_prompt_in_front_of_instructions() -> None:
    request = {"model": "m", "input": "hi", "instructions": "be brief"}
    assert prepend(request, "aresponses", b"RULES") is True
    assert request["instructions"] == "RULES\n\nbe brief"
    bare = {"model": "m", "input": "hi"}
    assert prepend(bare, "aresponses", b"RULES") is True and bare["instructions"] == "RULES"


@pytest.mark.parametrize("call_type", ["aembedding", "aimage_generation", "atranscription"])
def test_calls_without_instructions_are_left_alone(call_type: str) -> None:
    request = {"model": "m", "input": ["text"], "messages": None}
    assert prepend(request, call_type, b"RULES") is False
    assert request == {"model": "m", "input": ["text"], "messages": None}


def test_an_empty_prompt_changes_nothing() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert prepend(request, "acompletion", b"") is False
    assert request == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_shown_keeps_log_lines_and_headers_safe() -> None:
    assert shown("design-first") == "design-first"
    assert shown("a b\nc") == "a_b_c"
    assert len(shown("x" * 500)) == 40
    assert shown(["list"]) == "list"


def test_the_agent_never_imports_the_hook_and_the_policy_needs_no_litellm() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; import workspace_agent.cli, workspace_agent.self_service, workspace_agent.usage, "
        "workspace_agent.models, workspace_agent.views, workspace_agent.run; "
        "assert not [m for m in sys.modules if m.startswith('workspace_agent.litellm_hook')], 'agent imported the hook'; "
        "import workspace_agent.litellm_hook.policy; "
        "assert 'litellm' not in sys.modules, 'policy imported litellm'; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# A client that already carries the prompt (OpenCode's instructions) gets it once, still first.

OPENCODE_STYLE = "You are OpenCode.\n<env>…</env>\nInstructions from: /home/coder/.config/opencode/enforcement.md\n{copy}\nSkills: …"


@pytest.mark.parametrize("trimmed", [False, True], ids=["exact", "trimmed"])
def test_chat_copy_in_the_clients_system_text_is_not_sent_twice(trimmed: bool) -> None:
    prompt = data.prompt_bytes("standard")
    text = prompt.decode("utf-8")
    copy = text.strip() if trimmed else text
    own = OPENCODE_STYLE.format(copy=copy)
    request = {"model": "m", "messages": [{"role": "system", "content": own}, {"role": "user", "content": "hi"}]}
    assert prepend(request, "acompletion", prompt) is True
    first, second, user = request["messages"]
    assert first == {"role": "system", "content": text}
    assert text.strip() not in second["content"] and second["content"].startswith("You are OpenCode.")
    assert second["content"].endswith("Skills: …") and "Instructions from:" in second["content"]
    assert user == {"role": "user", "content": "hi"}
    assert sum(m["content"].count(text.strip()) for m in request["messages"]) == 1


def test_a_system_message_that_was_only_the_copy_is_dropped_and_users_turns_are_never_touched() -> None:
    text = data.prompt_text("design-first")
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": text},
            {"role": "developer", "content": [{"type": "text", "text": text}, {"type": "text", "text": "own part"}]},
            {"role": "user", "content": f"please review this: {text}"},
        ],
    }
    assert prepend(request, "acompletion", text.encode()) is True
    assert request["messages"] == [
        {"role": "system", "content": text},
        {"role": "developer", "content": [{"type": "text", "text": "own part"}]},
        {"role": "user", "content": f"please review this: {text}"},
    ]


def test_anthropic_and_responses_copies_are_taken_out_too() -> None:
    text = data.prompt_text("standard")
    anthropic = {"model": "m", "messages": [], "system": [{"type": "text", "text": "own"}, {"type": "text", "text": text}]}
    assert prepend(anthropic, "anthropic_messages", text.encode()) is True
    assert anthropic["system"] == [{"type": "text", "text": text}, {"type": "text", "text": "own"}]
    plain = {"model": "m", "messages": [], "system": f"own\n{text}"}
    assert prepend(plain, "anthropic_messages", text.encode()) is True
    assert plain["system"] == [{"type": "text", "text": text}, {"type": "text", "text": "own\n"}]
    only = {"model": "m", "messages": [], "system": text}
    assert prepend(only, "anthropic_messages", text.encode()) is True and only["system"] == text
    responses = {"model": "m", "input": "hi", "instructions": f"{text}\nbe brief"}
    assert prepend(responses, "aresponses", text.encode()) is True
    assert responses["instructions"] == f"{text}\n\n\nbe brief" and responses["instructions"].count(text) == 1


def test_roo_and_zoo_style_copies_are_all_taken_out() -> None:
    """Roo Code and Zoo Code put the text in their prompt twice, trimmed: as the global custom
    instructions and as the rule file (read from Zoo Code's custom-instructions.ts)."""
    text = data.prompt_text("design-first")
    own = (
        "You are Zoo.\n\n====\n\nUSER'S CUSTOM INSTRUCTIONS\n\n"
        f"Global Instructions:\n{text.strip()}\n\n"
        f"# Rules from ../.zoo/rules/00-platform-enforcement.md:\n{text.strip()}\n"
    )
    request = {"model": "m", "messages": [{"role": "system", "content": own}, {"role": "user", "content": "hi"}]}
    assert prepend(request, "acompletion", text.encode()) is True
    joined = "".join(m["content"] for m in request["messages"])
    assert joined.count(text.strip()) == 1 and request["messages"][0]["content"] == text
    assert "Global Instructions:" in request["messages"][1]["content"]
