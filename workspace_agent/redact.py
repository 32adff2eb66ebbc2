"""Make secrets safe to show: a key is never printed in full, at most `sk-…abcd`.

`redact` applies to any text leaving the process: the secrets we know (the key, the
provisioner and enrollment secrets, tokens) and anything shaped like an `sk-` key. File
contents (diffs, a rule's before/after value) also go through `mask_bound_values`: the value of
anything bound to a key-like name (`apiKey`, `OPENAI_API_KEY=`, `"token":`, `password =`) is
masked whatever its shape, so an old key that was never `sk-…` is masked too. (Not applied to
messages: prose such as "failed to generate key: litellm returned 500" is not an assignment.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Anything that looks like a LiteLLM/OpenAI-style key, even one we were not told about.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")

# name (bare or quoted), `:` or `=`, then a quoted string or a bare word (not an object or list).
_BOUND = re.compile(
    r"""(?<![A-Za-z0-9_.\-])(?P<quote>["']?)(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P=quote)"""
    r"""(?P<sep>[ \t]*[:=][ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,;#{}\[\]"']+)"""
)
# A name is key-like when one of its words (split at `_ . -` and lower→Upper) is one of these.
SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "passphrase", "credential",
    "credentials", "auth", "authorization", "bearer", "privatekey", "accesskey", "cookie", "session",
})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_PLAIN = frozenset({"true", "false", "null", "none", "yes", "no", "on", "off"})
# Not a secret but where one comes from: already masked (`sk-…abcd`), a shell variable, a file or
# environment reference (OpenCode's `{file:…}`, `{env:…}`).
_REFERENCE = r"(?:sk-)?…|\$|\{(?:file|env):"  # compiled on first use (re keeps it): a compliant check never needs it


def mask(secret: str) -> str:
    """Show a secret as `sk-…abcd` (prefix kept only when it is the usual `sk-`)."""
    if not secret:
        return "(empty)"
    tail = secret[-4:] if len(secret) >= 12 else ""
    prefix = "sk-" if secret.startswith("sk-") else ""
    return f"{prefix}…{tail}"


def key_like(name: str) -> bool:
    """`openAiApiKey`, `OPENAI_API_KEY`, `drift.token`: yes; `keyboard`, `keys`, `monkey`: no."""
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(name))


def _mask_bound(match: re.Match[str]) -> str:
    value = match.group("value")
    quoted = value[:1] in "\"'" and len(value) >= 2
    inner = value[1:-1] if quoted else value
    if not key_like(match.group("name")) or not inner or inner.lower() in _PLAIN or re.match(_REFERENCE, inner):
        return match.group(0)
    if not quoted and re.fullmatch(r"-?[0-9.]+", inner):
        return match.group(0)  # a number (a port, a count) bound to e.g. `max_tokens`
    shown = mask(inner)
    shown = f"{value[0]}{shown}{value[-1]}" if quoted else shown
    return match.group(0)[: match.start("value") - match.start(0)] + shown


def mask_bound_values(text: str) -> str:
    """Mask the value of every assignment whose name is key-like, whatever the value looks like."""
    return _BOUND.sub(_mask_bound, text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every known secret, and anything key-shaped, with its masked form."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return _KEY_LIKE.sub(lambda m: mask(m.group(0)), text)
