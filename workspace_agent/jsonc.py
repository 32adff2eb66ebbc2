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
import itertools
import json
import json.scanner
import math
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterator

from workspace_agent.record import Record

__all__ = ["JsoncError", "delete_key", "get_key", "loads", "set_key"]

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
    rf'((?:[^"/,]+|{_STRING}|,(?!{_CLOSES_NEXT})){{1,256}})'
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


def get_key(text: str, key: str, default: object = None) -> object:
    """The value of the top-level property `key` (the last one if duplicated), else `default`.

    Validates `text` as `loads` does (same errors) but never builds the whole document: a
    settings.json of 400,000 keys is indexed once (member positions, not values) and only the
    asked value is parsed."""
    _bom, body, index = _indexed(text)
    i = _find(index, body, key)
    return default if i < 0 else _value_at(body, index, i)


def set_key(text: str, key: str, value: object) -> str:
    """Return `text` with the top-level property `key` set to `value`.

    An existing property (the last one, if `key` is duplicated) gets only its value replaced;
    a missing one is appended as the last member.  Text whose value already equals `value` is
    returned unchanged.  Comments inside a replaced value are moved to just before the property.
    The result's index is derived from this one's, so a run of edits on a big file scans it once.
    """
    bom, body, index = _indexed(text)
    i = _find(index, body, key)
    if i >= 0 and _same(_value_at(body, index, i), value):
        return text
    _keep_only(text)
    nl = _newline(body)
    key_json = json.dumps(key, ensure_ascii=False)

    if index.open < 0:  # blank or comment-only text: write a new object
        unit = "    "
        new = (
            "{" + nl + unit + key_json + ": " + _dump(value, unit, unit, nl, False) + nl + "}" + nl
        )
        if not body.strip(_WS):
            return bom + new
        return bom + body + ("" if body.endswith("\n") else nl) + new

    unit = _indent_unit(body, index.open)
    inline = body.find("\n", index.open, index.close) < 0
    open_indent = _indent_of(body, index.open)

    if i >= 0:
        key_start = index.key_starts[i]
        value_start, value_end = _span(body, key_start)
        base = _indent_of(body, key_start)
        key_first = _starts_line(body, key_start)
        hoisted = []
        for start, end, kind in _tokens(body, value_start, value_end):
            if kind == _COMMENT:
                comment = body[start:end]
                line_comment = comment.startswith("//")
                hoisted.append(comment + (nl + base if key_first or line_comment else " "))
        moved = "".join(hoisted)
        new_value = _dump(value, unit, base, nl, inline)
        result = "".join((body[:key_start], moved, body[key_start:value_start], new_value, body[value_end:]))
        return _remember(bom, result, index.replaced(i, len(moved), len(result) - len(body)))

    edits: list[tuple[int, int, str]] = []
    count = len(index.key_starts)
    if count and inline:
        last_end = _span(body, index.key_starts[-1])[1]
        comma = _comma_after(body, last_end)
        member = key_json + ": " + _dump(value, unit, "", nl, True)
        if comma >= 0:
            edits.append((comma + 1, comma + 1, " " + member + ","))
            new_key = comma + 2
        else:
            edits.append((last_end, last_end, ", " + member))
            new_key = last_end + 2
    else:
        if count:
            last_key = index.key_starts[-1]
            last_end = _span(body, last_key)[1]
            comma = _comma_after(body, last_end)
            if comma >= 0:
                pos, trail = comma + 1, ","
            else:
                pos, trail = last_end, ""
                edits.append((pos, pos, ","))
            if _starts_line(body, last_key):
                indent = _indent_of(body, last_key)
            else:
                indent = open_indent + unit
        else:
            pos, trail, indent = index.open + 1, "", open_indent + unit
        pos = _skip_line_comments(body, pos)
        dumped = _dump(value, unit, indent, nl, False)
        insert = nl + indent + key_json + ": " + dumped + trail
        end = pos
        rest = body[pos : _eol(body, pos)]
        if rest.strip(" \t"):  # something (the closing brace) follows on this line
            end = pos + len(rest) - len(rest.lstrip(" \t"))
            insert += nl + open_indent
        new_key = pos + len(edits) + len(nl) + len(indent)  # after the comma inserted before it, if any
        edits.append((pos, end, insert))
    result = _apply(body, edits)
    return _remember(bom, result, index.appended(new_key, len(result) - len(body)))


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


# --- the member index (big files: positions, never the whole document) ----------------------

_SP = "[ \t\r\n]*"
# Strict JSON (what json.loads accepts, NaN and Infinity included), matched on cleaned text.
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_JSON_SCALAR = rf"{_JSON_STRING}|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|NaN|-?Infinity"
# One member: 1 key, then 2 a scalar value and 3 what follows it, or 4 the start of a container.
_MEMBER_RE = re.compile(rf"{_SP}({_JSON_STRING}){_SP}:{_SP}(?:({_JSON_SCALAR}){_SP}([,}}])|([\[{{]))")
_AFTER_RE = re.compile(rf"{_SP}([,}}])")
_OPEN_RE = re.compile(rf"{_SP}{{")
_EMPTY_RE = re.compile(rf"{_SP}}}")
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # the C scanner: one value at a position
_INDEX_CACHE = 2  # the text being folded and the one just made from it


class _Index(Record):
    """Where each top-level member of valid JSONC text starts (its key's quote); `open` -1 for
    blank text. Value spans are found when asked (`_span`): one member, not 400,000."""

    open: int
    close: int
    key_starts: array
    escaped: dict[str, int]  # keys written with escapes: decoded key → last member index

    def replaced(self, i: int, moved: int, delta: int) -> _Index:
        """After `moved` chars went before member i's key and the text grew by `delta` there."""
        ks = array("q", self.key_starts)
        ks[i] += moved
        if delta:
            ks[i + 1 :] = array("q", [p + delta for p in ks[i + 1 :]])
        return _Index(self.open, self.close + delta, ks, self.escaped)

    def appended(self, key_start: int, delta: int) -> _Index:
        """After a member was added at the end (every edit after the last member's value)."""
        ks = array("q", self.key_starts)
        ks.append(key_start)
        return _Index(self.open, self.close + delta, ks, self.escaped)


_indexes: dict[str, tuple[str, str, _Index]] = {}


def _remember(bom: str, body: str, index: _Index, text: str | None = None) -> str:
    """Keep the index of `text` (= `bom + body`; the few most recent texts only); return it."""
    text = bom + body if text is None else text
    while len(_indexes) >= _INDEX_CACHE:
        _indexes.pop(next(iter(_indexes)))
    _indexes[text] = (bom, body, index)
    return text


def _keep_only(text: str) -> None:
    """Before an edit makes a new text: forget every other one (a big file is 8 MB each)."""
    for other in [t for t in _indexes if t is not text and t != text]:
        del _indexes[other]


def _indexed(text: str) -> tuple[str, str, _Index]:
    """(BOM, body, index) of `text`; raises JsoncError (as `loads`) when it is not valid."""
    hit = _indexes.get(text)
    if hit is not None:
        return hit
    bom, body = (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)
    index = _build_index(body)
    if index is None:
        loads(text)  # raises the precise error; if it does not, index the slow way
        index = _index_of_doc(body, _parse(body))
    _remember(bom, body, index, text)
    return bom, body, index


def _build_index(body: str) -> _Index | None:
    """One pass over the top level; None when the text is not a valid JSONC object."""
    cleaned = _clean.__wrapped__(body)  # not cached: a big file would stay in memory twice
    if not cleaned.strip(_WS):
        return _Index(-1, -1, array("q"), {})
    opening = _OPEN_RE.match(cleaned)
    if opening is None:
        return None
    ks = array("q")
    escaped: dict[str, int] = {}
    pos = opening.end()
    empty = _EMPTY_RE.match(cleaned, pos)
    if empty is not None:
        pos = empty.end()
    else:
        member, append = _MEMBER_RE.match, ks.append  # the loop runs once per member: kept lean
        escapes = "\\" in cleaned  # a key written with an escape needs decoding to be found
        while True:
            found = member(cleaned, pos)
            if found is None:
                return None
            key_start = found.start(1)
            if escapes and "\\" in cleaned[key_start : found.end(1)]:
                escaped[json.loads(cleaned[key_start : found.end(1)])] = len(ks)
            append(key_start)
            if found.lastindex == 3:
                pos = found.end()  # the match ends with the `,` or `}` after the value
            else:
                try:
                    _value, end = _SCAN(cleaned, found.start(4))
                except (StopIteration, ValueError, RecursionError):
                    return None
                after = _AFTER_RE.match(cleaned, end)
                if after is None:
                    return None
                pos = after.end()
            if cleaned[pos - 1] == "}":
                break
    if cleaned[pos:].strip(_WS):
        return None
    return _Index(opening.end() - 1, pos - 1, ks, escaped)


def _index_of_doc(body: str, doc: _Doc) -> _Index:
    escaped: dict[str, int] = {}
    for n, m in enumerate(doc.members):
        if "\\" in body[m.key_start : m.value_start]:
            escaped[m.key] = n
    return _Index(doc.open, doc.close, array("q", [m.key_start for m in doc.members]), escaped)


def _find(index: _Index, body: str, key: str) -> int:
    """The index of the last top-level member named `key`, -1 when there is none."""
    if index.open < 0:
        return -1
    needle = json.dumps(key, ensure_ascii=False)
    found = -1
    end = index.close
    while True:
        pos = body.rfind(needle, index.open, end)
        if pos < 0:
            break
        n = bisect_left(index.key_starts, pos)
        if n < len(index.key_starts) and index.key_starts[n] == pos:
            found = n
            break
        end = pos + len(needle) - 1
    return max(found, index.escaped.get(key, -1))


def _span(body: str, key_start: int) -> tuple[int, int]:
    """(start, end) of the value of the member whose key starts at `key_start`."""
    found = _MEMBER_RE.match(body, key_start)  # no comment around it: the usual case
    if found is not None:
        if found.lastindex == 3:
            return found.span(2)
        start = found.start(4)
        try:
            return start, _SCAN(body, start)[1]
        except (StopIteration, ValueError, RecursionError):
            pass  # a comment or trailing comma inside the container: by tokens
    significant = (t for t in _tokens(body, key_start, len(body)) if t[2] != _COMMENT)
    next(significant)  # the key
    next(significant)  # the colon
    start, end, kind = next(significant)
    if kind != _PUNCT:
        return start, end
    depth = 0
    for at, until, what in itertools.chain([(start, end, kind)], significant):
        if what == _PUNCT and body[at] in "{[":
            depth += 1
        elif what == _PUNCT and body[at] in "}]":
            depth -= 1
            if depth == 0:
                return start, until
    raise AssertionError("unbalanced text passed validation")


def _value_at(body: str, index: _Index, i: int) -> object:
    start, end = _span(body, index.key_starts[i])
    fragment = body[start:end]
    try:
        return json.loads(fragment)
    except json.JSONDecodeError:  # comments or trailing commas inside a container value
        return json.loads(_clean.__wrapped__(fragment))


def _comma_after(body: str, value_end: int) -> int:
    """Position of the comma after a value that ends at `value_end` (-1: none), comments skipped."""
    for start, _end, kind in _tokens(body, value_end, len(body)):
        if kind == _COMMENT:
            continue
        return start if body[start] == "," else -1
    return -1


def _tokens(body: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The tokens of `body` from `start` (a token boundary) while they start before `end`."""
    for match in re.compile(_TOKEN).finditer(body, start):
        if match.start() >= end:
            return
        yield match.start(), match.end(), match.lastindex or 0


# --- structure for editing --------------------------------------------------------------------


class _Member(Record):
    key: str
    key_start: int
    value_start: int
    value_end: int
    comma: int  # position of the comma after the value, -1 if none
    first_tok: int  # indexes into _Doc.toks of the value's first and last token
    last_tok: int


class _Doc(Record):
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
    after = _skip_line_comments(body, end)
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


def _indent_unit(body: str, open_pos: int = 0) -> str:
    """The indent of the first indented line that starts with a token (tab or N spaces)."""
    for start, _end, kind in _tokens(body, 0, len(body)):
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


def _skip_line_comments(body: str, pos: int) -> int:
    """Move `pos` past comments that follow it on the same line and end on that line."""
    eol = _eol(body, pos)
    for start, end, kind in _tokens(body, pos, eol):
        if kind != _COMMENT or "\n" in body[start:end] or "\r" in body[start:end]:
            break
        pos = end
    return pos
