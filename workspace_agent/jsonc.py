"""Read and edit JSONC files (VS Code's settings.json) without losing their comments.

`json5` can parse JSONC but cannot write it back: dumping the parsed object would drop every
comment, trailing comma and bit of layout the user wrote.  This module parses JSONC quickly
(blank out comments and trailing commas, then `json.loads`) and edits a top-level property by
replacing or inserting only the text of that property, leaving the rest of the file byte-identical.

Supported input: `//` and `/* */` comments, trailing commas, a UTF-8 BOM, LF or CRLF line endings,
and empty, whitespace-only or comment-only text (which counts as `{}`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from bisect import bisect_left
from typing import NamedTuple

__all__ = ["JsoncError", "delete_key", "loads", "set_key"]

_BOM = "\ufeff"
_WS = " \t\r\n"

# A block comment, written so that it always ends at the FIRST `*/` (no backtracking past it).
_BLOCK = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
_LINE = r"//[^\r\n]*"
# A string on one line, unrolled so that an unterminated string fails in linear time.
_STRING = r'"[^"\\\r\n]*(?:\\[^\r\n][^"\\\r\n]*)*"'

# For loads(), matched left to right by `_clean`:
#   1 a run of text to keep as is: anything but `"`, `/`, `,`; whole strings; commas that are not
#     trailing.  Matching runs (not single strings) keeps the Python callbacks few;
#   2 a comment (blanked); 3 a trailing comma (blanked); 4 a quote that starts no complete
#     string; 5 a block comment that never ends.
# In the trailing-comma lookahead a line comment must run to its newline, or backtracking could
# find a `}` inside the comment.
_CLOSES_NEXT = rf"(?:[ \t\r\n]|{_LINE}[\r\n]|{_BLOCK})*[}}\]]"
_CLEAN = (
    rf'((?:[^"/,]+|{_STRING}|,(?!{_CLOSES_NEXT}))+)'
    rf'|({_LINE}|{_BLOCK})|(,)(?={_CLOSES_NEXT})|(")|(/\*)'
)

# For editing (the text is already known to be valid): 1 comment, 2 string, 3 punctuation,
# 4 number or literal.  Whitespace is not a token.
_COMMENT, _STR, _PUNCT, _LIT = 1, 2, 3, 4
_TOKEN = rf'({_LINE}|{_BLOCK})|({_STRING})|([{{}}\[\]:,])|([^ \t\r\n{{}}\[\]:,"/]+)'
# Patterns are compiled on first use (`re` caches them), not at import: plain-JSON loads and
# importers that never edit do not pay for them.


class JsoncError(ValueError):
    """The text is not valid JSONC, or its top level is not an object.

    `line` and `column` are 1-based and count from after a BOM.
    """

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"invalid JSONC at line {line}:{column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column


def loads(text: str) -> dict:
    """Parse JSONC text; empty, whitespace-only or comment-only text is `{}`.

    Raises `JsoncError` (with line:column) for invalid text or a top level that is not an object.
    Duplicate keys: the last one wins, as in VS Code.
    """
    body = text[1:] if text.startswith(_BOM) else text
    try:
        obj = json.loads(body)  # fast path: plain JSON, no comments or trailing commas
    except json.JSONDecodeError:
        cleaned = _clean(body)
        if not cleaned.strip(_WS):
            return {}
        try:
            obj = json.loads(cleaned)
        except json.JSONDecodeError as exc:
            # `cleaned` has the same length and newlines as `body`, so positions carry over.
            raise JsoncError(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise JsoncError("values nested too deeply", 1, 1) from None
    if not isinstance(obj, dict):
        match = re.search(r"[^ \t\r\n]", _clean(body))
        pos = match.start() if match else 0
        raise _error(body, pos, f"the top level is {_kind(obj)}, expected an object")
    return obj


def set_key(text: str, key: str, value: object) -> str:
    """Return `text` with the top-level property `key` set to `value`.

    An existing property (the last one, if `key` is duplicated) gets only its value replaced;
    a missing one is appended as the last member.  Text whose value already equals `value` is
    returned unchanged.  Comments inside a replaced value are moved to just before the property.
    """
    obj = loads(text)
    if key in obj and _same(obj[key], value):
        return text
    bom, body = (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)
    nl = _newline(body)
    key_json = json.dumps(key, ensure_ascii=False)
    doc = _parse(body)

    if doc.open < 0:  # blank or comment-only text: write a new object
        unit = "    "
        new = (
            "{" + nl + unit + key_json + ": " + _dump(value, unit, unit, nl, False) + nl + "}" + nl
        )
        if not body.strip(_WS):
            return bom + new
        return bom + body + ("" if body.endswith("\n") else nl) + new

    unit = _indent_unit(body, doc)
    inline = "\n" not in body[doc.open : doc.close]
    open_indent = _indent_of(body, doc.open)
    same = [m for m in doc.members if m.key == key]

    if same:
        m = same[-1]
        base = _indent_of(body, m.key_start)
        key_first = _starts_line(body, m.key_start)
        hoisted = []
        for start, end, kind in doc.toks[m.first_tok : m.last_tok + 1]:
            if kind == _COMMENT:
                comment = body[start:end]
                line_comment = comment.startswith("//")
                hoisted.append(comment + (nl + base if key_first or line_comment else " "))
        new_value = _dump(value, unit, base, nl, inline)
        return bom + "".join(
            (
                body[: m.key_start],
                *hoisted,
                body[m.key_start : m.value_start],
                new_value,
                body[m.value_end :],
            )
        )

    edits: list[tuple[int, int, str]] = []
    if doc.members and inline:
        last = doc.members[-1]
        member = key_json + ": " + _dump(value, unit, "", nl, True)
        if last.comma >= 0:
            edits.append((last.comma + 1, last.comma + 1, " " + member + ","))
        else:
            edits.append((last.value_end, last.value_end, ", " + member))
    else:
        if doc.members:
            last = doc.members[-1]
            if last.comma >= 0:
                pos, trail = last.comma + 1, ","
            else:
                pos, trail = last.value_end, ""
                edits.append((pos, pos, ","))
            if _starts_line(body, last.key_start):
                indent = _indent_of(body, last.key_start)
            else:
                indent = open_indent + unit
        else:
            pos, trail, indent = doc.open + 1, "", open_indent + unit
        pos = _skip_line_comments(body, doc, pos)
        insert = nl + indent + key_json + ": " + _dump(value, unit, indent, nl, False) + trail
        end = pos
        rest = body[pos : _eol(body, pos)]
        if rest.strip(" \t"):  # something (the closing brace) follows on this line
            end = pos + len(rest) - len(rest.lstrip(" \t"))
            insert += nl + open_indent
        edits.append((pos, end, insert))
    return bom + _apply(body, edits)


def delete_key(text: str, key: str) -> str:
    """Return `text` without any top-level property `key` (every duplicate goes).

    Comments on their own lines around the property are kept; comments inside it, or trailing it
    on its last line, go with it.  Text without `key` is returned unchanged.
    """
    loads(text)  # validate, with a good error message
    bom, body = (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)
    while True:
        doc = _parse(body)
        found = [i for i, m in enumerate(doc.members) if m.key == key]
        if not found:
            return bom + body
        body = _delete_member(body, doc, found[-1])


# --- scanning ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _clean(body: str) -> str:
    """Blank out comments and trailing commas (same length, same newlines) for `json.loads`.

    Cached (pure str → str): one run checks a dozen keys of the same settings.json, and each
    check used to re-scan all of it (about 1.5 ms for 300 commented lines, 60 ms per `check`).
    Errors are not cached; callers get fresh objects from `json.loads` every time."""
    comment_at_end: dict[int, int] = {}

    def replace(match: re.Match[str]) -> str:
        group = match.lastindex
        if group == 1:
            return match.group(1)
        if group == 2:
            comment = match.group(2)
            comment_at_end[match.end()] = match.start()
            if comment[1] == "/":
                return " " * len(comment)
            return re.sub(r"[^\r\n]", " ", comment)
        if group == 3:
            _check_trailing_comma(body, match.start(), comment_at_end)
            return " "
        reason = "unterminated string" if group == 4 else "unterminated block comment"
        raise _error(body, match.start(), reason)

    return re.sub(_CLEAN, replace, body)


def _check_trailing_comma(body: str, pos: int, comment_at_end: dict[int, int]) -> None:
    """A comma before `}`/`]` is fine only after a value (not in `{,}`, `[1,,]`)."""
    j = pos
    while j > 0:
        if j in comment_at_end:  # checked first: a line comment may end in spaces
            j = comment_at_end[j]
        elif body[j - 1] in _WS:
            j -= 1
        else:
            break
    if j == 0 or body[j - 1] in "{[,":
        raise _error(body, pos, "unexpected comma")


def _error(body: str, pos: int, reason: str) -> JsoncError:
    line = body.count("\n", 0, pos) + 1
    column = pos - (body.rfind("\n", 0, pos) + 1) + 1
    return JsoncError(reason, line, column)


def _kind(obj: object) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"


# --- structure for editing --------------------------------------------------------------------


class _Member(NamedTuple):
    key: str
    key_start: int
    value_start: int
    value_end: int
    comma: int  # position of the comma after the value, -1 if none
    first_tok: int  # indexes into _Doc.toks of the value's first and last token
    last_tok: int


class _Doc(NamedTuple):
    toks: list[tuple[int, int, int]]  # (start, end, kind), comments included
    starts: list[int]
    open: int  # position of the top-level `{`, -1 when there is no object
    close: int  # position of the top-level `}`
    members: list[_Member]


def _parse(body: str) -> _Doc:
    """Find the top-level members of text already validated by `loads`."""
    toks = [(m.start(), m.end(), m.lastindex or 0) for m in re.finditer(_TOKEN, body)]
    starts = [t[0] for t in toks]
    sig = [i for i, t in enumerate(toks) if t[2] != _COMMENT]
    if not sig:
        return _Doc(toks, starts, -1, -1, [])

    def char(n: int) -> str:
        return body[toks[sig[n]][0]]

    def value_end(n: int) -> int:
        if char(n) not in "{[":
            return n
        depth = 0
        while True:
            if toks[sig[n]][2] == _PUNCT:
                c = char(n)
                if c in "{[":
                    depth += 1
                elif c in "}]":
                    depth -= 1
                    if depth == 0:
                        return n
            n += 1

    members = []
    n = 1
    while char(n) != "}":
        key_tok = toks[sig[n]]
        v = n + 2  # past the colon
        e = value_end(v)
        nxt = e + 1
        comma = -1
        if char(nxt) == ",":
            comma = toks[sig[nxt]][0]
            nxt += 1
        members.append(
            _Member(
                key=json.loads(body[key_tok[0] : key_tok[1]]),
                key_start=key_tok[0],
                value_start=toks[sig[v]][0],
                value_end=toks[sig[e]][1],
                comma=comma,
                first_tok=sig[v],
                last_tok=sig[e],
            )
        )
        n = nxt
    return _Doc(toks, starts, toks[sig[0]][0], toks[sig[n]][0], members)


def _delete_member(body: str, doc: _Doc, index: int) -> str:
    m = doc.members[index]
    prev_comma = doc.members[index - 1].comma if index > 0 else -1
    start = m.key_start
    end = m.comma + 1 if m.comma >= 0 else m.value_end
    after = _skip_line_comments(body, doc, end)
    eol = _eol(body, end)
    ends_line = not body[after:eol].strip(" \t")
    edits = []
    if m.comma < 0 and prev_comma >= 0:
        edits.append((prev_comma, prev_comma + 1, ""))
    if _starts_line(body, start) and ends_line:
        line_end = eol + (2 if body.startswith("\r\n", eol) else 1)
        edits.append((_line_start(body, start), min(line_end, len(body)), ""))
    elif ends_line:
        edits.append((_back_over(body, start, " \t"), eol, ""))
    elif m.comma >= 0:
        after_ws = _forward_over(body, end, " \t")
        if body.startswith("}", after_ws):  # `..., "k": 1, }`: keep the space before the brace
            edits.append((_back_over(body, start, " \t"), end, ""))
        else:
            edits.append((start, after_ws, ""))
    else:
        # Not over newlines: one may end a line comment before the property.
        edits.append((max(_back_over(body, start, " \t"), prev_comma + 1), end, ""))
    return _apply(body, edits)


def _apply(body: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, replacement) edits; equal starts keep list order."""
    out = []
    cur = 0
    for start, end, new in sorted(edits, key=lambda e: e[0]):
        out.append(body[cur:start])
        out.append(new)
        cur = end
    out.append(body[cur:])
    return "".join(out)


def _dump(value: object, unit: str, base: str, nl: str, inline: bool) -> str:
    """JSON text for `value`; containers pretty-printed, continuation lines indented by `base`."""
    if inline or not isinstance(value, (dict, list, tuple)) or not value:
        return json.dumps(value, ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False, indent=unit)
    return text.replace("\n", nl + base)


def _same(a: object, b: object) -> bool:
    """Equality that tells `true` from `1` (Python's `==` does not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))  # NaN is the same as NaN here
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(k in b and _same(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b))
        )
    return a == b


# --- layout helpers ---------------------------------------------------------------------------


def _newline(body: str) -> str:
    i = body.find("\n")
    return "\r\n" if i > 0 and body[i - 1] == "\r" else "\n"


def _indent_unit(body: str, doc: _Doc) -> str:
    """The indent of the first indented line that starts with a token (tab or N spaces)."""
    for start, _end, kind in doc.toks:
        if kind == _COMMENT:
            continue
        prefix = body[_line_start(body, start) : start]
        if prefix and not prefix.strip(" \t"):
            return "\t" if "\t" in prefix else prefix
    return "    "


def _line_start(body: str, pos: int) -> int:
    return body.rfind("\n", 0, pos) + 1


def _eol(body: str, pos: int) -> int:
    """Position of the end of the line holding `pos` (before its `\\r\\n` or `\\n`)."""
    i = body.find("\n", pos)
    if i < 0:
        return len(body)
    return i - 1 if i > pos and body[i - 1] == "\r" else i


def _indent_of(body: str, pos: int) -> str:
    start = _line_start(body, pos)
    return body[start : _forward_over(body, start, " \t")]


def _starts_line(body: str, pos: int) -> bool:
    return not body[_line_start(body, pos) : pos].strip(" \t")


def _forward_over(body: str, pos: int, chars: str) -> int:
    while pos < len(body) and body[pos] in chars:
        pos += 1
    return pos


def _back_over(body: str, pos: int, chars: str) -> int:
    while pos > 0 and body[pos - 1] in chars:
        pos -= 1
    return pos


def _skip_line_comments(body: str, doc: _Doc, pos: int) -> int:
    """Move `pos` past comments that follow it on the same line and end on that line."""
    eol = _eol(body, pos)
    k = bisect_left(doc.starts, pos)
    while k < len(doc.toks):
        start, end, kind = doc.toks[k]
        if kind != _COMMENT or start >= eol or "\n" in body[start:end] or "\r" in body[start:end]:
            break
        pos = end
        k += 1
    return pos
