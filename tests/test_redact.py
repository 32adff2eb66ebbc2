"""redact: known secrets, sk- shapes, and values bound to key-like names whatever their shape."""

from __future__ import annotations

import pytest

from workspace_agent.redact import key_like, mask_bound_values, redact


@pytest.mark.parametrize("name", ["openAiApiKey", "OPENAI_API_KEY", "apiKey", "drift.token", "DB_PASSWORD",
                                  "client_secret", "Authorization", "aws_access_key_id"])
def test_key_like_names(name: str) -> None:
    assert key_like(name)


@pytest.mark.parametrize("name", ["keyboard", "keys", "monkey", "max_tokens", "editor.inlineSuggest.enabled", "model"])
def test_names_that_are_not_key_like(name: str) -> None:
    assert not key_like(name)


@pytest.mark.parametrize(("line", "hidden"), [
    ('  "openAiApiKey": "old-plain-key-Hq5Jw8Nc3",', "old-plain-key-Hq5Jw8Nc3"),
    ("export OPENAI_API_KEY=abcdefghijklmnop", "abcdefghijklmnop"),
    ("password = 'hunter2'", "hunter2"),
    ("token: 0123456789abcdef", "0123456789abcdef"),
    ('-    "apiKey": "x/y+z=="', "x/y+z=="),
])
def test_a_value_bound_to_a_key_like_name_is_masked_whatever_its_shape(line: str, hidden: str) -> None:
    masked = mask_bound_values(line)
    assert hidden not in masked
    assert "…" in masked


@pytest.mark.parametrize("line", ['"github.copilot.enable": {"*": false}', '"chat.agent.enabled": false',
                                  '"ANTHROPIC_AUTH_TOKEN": ""', '"max_tokens": 4096', '"apiKey": true',
                                  '"openAiApiKey": "sk-…1Rt6"', 'export OPENAI_API_KEY="$_wa_key"',
                                  '"apiKey": "{file:~/.config/workspace-agent/litellm.key}"'])
def test_structure_and_plain_values_are_left_as_they_are(line: str) -> None:
    assert mask_bound_values(line) == line


def test_redact_keeps_prose_and_masks_key_shapes() -> None:
    said = "Failed to generate key: litellm returned 500; key sk-live-ABCDEFGHIJ1234"
    assert redact(said) == "Failed to generate key: litellm returned 500; key sk-…1234"
