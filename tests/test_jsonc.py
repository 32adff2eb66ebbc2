"""Tests for workspace_agent.jsonc, with json5 as the oracle for what a JSONC text means."""

from __future__ import annotations

import os

import itertools
import json
import random

import json5
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workspace_agent.jsonc import JsoncError, delete_key, loads, set_key

BOM = "\ufeff"


def canon(obj: object) -> str:
    """Comparable form that tells true from 1, ignores key order, and (like JSON) 1.0 from 1."""
    return json.dumps(_ints(obj), sort_keys=True, ensure_ascii=False)


def _ints(obj: object) -> object:
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_ints(v) for v in obj]
    return obj


def oracle(text: str) -> object:
    return json5.loads(text)


def check_set(text: str, key: str, value: object) -> str:
    out = set_key(text, key, value)
    expected = dict(oracle(text)) if loads(text) else {}  # json5 rejects comment-only text
    expected[key] = value
    assert canon(oracle(out)) == canon(expected)
    assert canon(loads(out)) == canon(expected)
    assert set_key(out, key, value) == out
    return out


# --- example tests ----------------------------------------------------------------------------

SETTINGS = """\
// Workspace settings
/* block
   comment */
{
    // before a key
    "editor.fontSize": 14, // after a value, with a "quote
    "files.exclude" /* between key and colon */ : {
        "**/.git": true, /* inside a value */
        "**/node_modules": true,
    },
    "http.proxy": "http://proxy:8080", // a URL with // inside a string
    "quote": "she said \\"hi\\" // not a comment",
    "glob": "src/*.py /* not a comment */",
    "list": [1, 2, 3,],
    "last": null // comment after the last member
    // own-line comment before the brace
}
"""

COMMENTS = [
    "// Workspace settings",
    "/* block\n   comment */",
    "// before a key",
    '// after a value, with a "quote',
    "/* between key and colon */",
    "/* inside a value */",
    "// a URL with // inside a string",
    "// comment after the last member",
    "// own-line comment before the brace",
]


def test_loads_settings_with_comments_everywhere():
    obj = loads(SETTINGS)
    assert obj == oracle(SETTINGS)
    assert obj["http.proxy"] == "http://proxy:8080"
    assert obj["quote"] == 'she said "hi" // not a comment'
    assert obj["glob"] == "src/*.py /* not a comment */"
    assert obj["files.exclude"] == {"**/.git": True, "**/node_modules": True}


@pytest.mark.parametrize(
    "text", ["", "   ", "\n\t\r\n", BOM, BOM + "\n", "// only a comment\n", "/* x */"]
)
def test_loads_blank_is_empty_object(text):
    assert loads(text) == {}


def test_loads_plain_json_and_empty_object():
    assert loads("{}") == {}
    assert loads('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


def test_loads_duplicate_keys_last_wins():
    assert loads('{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize("key", ["editor.fontSize", "files.exclude", "last", "list", "http.proxy"])
@pytest.mark.parametrize("value", [1, "x", None, True, [1, "two"], {"n": {"m": [1]}}, {}, []])
def test_set_existing_key_keeps_comments_and_layout(key, value):
    out = check_set(SETTINGS, key, value)
    for comment in COMMENTS:
        assert comment in out
    # Only the value changes: the text before the property is byte-identical.
    assert out.startswith(SETTINGS[: SETTINGS.index(f'"{key}"')])


def test_set_replaces_only_the_value_span():
    out = set_key(SETTINGS, "editor.fontSize", 16)
    assert out == SETTINGS.replace('"editor.fontSize": 14,', '"editor.fontSize": 16,')


def test_set_new_key_after_last_member_followed_by_comment():
    out = check_set(SETTINGS, "new.key", "v")
    assert '    "last": null, // comment after the last member\n    "new.key": "v"\n' in out
    assert out.endswith("    // own-line comment before the brace\n}\n")
    for comment in COMMENTS:
        assert comment in out


def test_set_same_value_returns_text_unchanged():
    for key, value in loads(SETTINGS).items():
        assert set_key(SETTINGS, key, value) == SETTINGS
    assert set_key('{"a": 1.0}', "a", 1) == '{"a": 1.0}'


def test_set_tells_true_from_one():
    assert loads(set_key('{"a": 1}', "a", True)) == {"a": True}
    assert type(loads(set_key('{"a": true}', "a", 1))["a"]) is int


def test_set_object_to_scalar_and_back():
    text = '{\n    "a": {\n        "b": 1\n    },\n    "c": 2\n}\n'
    scalar = check_set(text, "a", 5)
    assert scalar == '{\n    "a": 5,\n    "c": 2\n}\n'
    back = check_set(scalar, "a", {"b": 1})
    assert back == text


def test_set_nested_value_indented_relative_to_property():
    text = '{\n  "a": 1\n}\n'
    out = check_set(text, "a", {"x": [1, 2], "y": {}})
    assert out == '{\n  "a": {\n    "x": [\n      1,\n      2\n    ],\n    "y": {}\n  }\n}\n'


def test_set_with_tabs_indentation():
    text = '{\n\t"a": 1\n}\n'
    out = check_set(text, "b", {"c": 1})
    assert out == '{\n\t"a": 1,\n\t"b": {\n\t\t"c": 1\n\t}\n}\n'


def test_set_crlf_file_stays_crlf():
    text = '{\r\n    // c\r\n    "a": 1\r\n}\r\n'
    out = check_set(text, "b", [1, 2])
    assert out.count("\n") == out.count("\r\n")
    assert (
        out
        == '{\r\n    // c\r\n    "a": 1,\r\n    "b": [\r\n        1,\r\n        2\r\n    ]\r\n}\r\n'
    )


def test_set_keeps_bom():
    text = BOM + '{\n    "a": 1\n}\n'
    assert check_set(text, "a", 2) == BOM + '{\n    "a": 2\n}\n'
    assert check_set(text, "b", 2).startswith(BOM + "{")
    assert check_set(BOM, "a", 1) == BOM + '{\n    "a": 1\n}\n'


@pytest.mark.parametrize("text", ["", "  \n ", "\n"])
def test_set_on_blank_text(text):
    assert set_key(text, "key", "value") == '{\n    "key": "value"\n}\n'


def test_set_on_comment_only_text_keeps_comment():
    out = check_set("// nothing yet", "a", 1)
    assert out == '// nothing yet\n{\n    "a": 1\n}\n'


def test_set_on_empty_object():
    assert check_set("{}", "a", 1) == '{\n    "a": 1\n}'
    assert check_set("{}\n", "a", {"b": 2}) == '{\n    "a": {\n        "b": 2\n    }\n}\n'
    assert check_set("{\n}\n", "a", 1) == '{\n    "a": 1\n}\n'
    assert check_set("{ // c\n}\n", "a", 1) == '{ // c\n    "a": 1\n}\n'
    assert check_set("{ /* c */ }", "a", 1) == '{ /* c */\n    "a": 1\n}'


def test_set_keeps_trailing_comma_style():
    assert check_set('{\n  "a": 1,\n}\n', "b", 2) == '{\n  "a": 1,\n  "b": 2,\n}\n'
    assert check_set('{\n  "a": 1\n}\n', "b", 2) == '{\n  "a": 1,\n  "b": 2\n}\n'


def test_set_single_line_object_stays_single_line():
    assert check_set('{"a": 1}', "b", {"c": [1]}) == '{"a": 1, "b": {"c": [1]}}'
    assert check_set('{"a": 1,}', "b", 2) == '{"a": 1, "b": 2,}'
    assert check_set('{"a": 1, "b": 2}', "a", [3]) == '{"a": [3], "b": 2}'


def test_set_closing_brace_on_last_member_line():
    assert check_set('{\n    "a": {\n        "x": 1\n    }}', "b", 2) == (
        '{\n    "a": {\n        "x": 1\n    },\n    "b": 2\n}'
    )


def test_set_duplicate_key_replaces_last_occurrence():
    text = '{\n    "a": 1,\n    "a": 2\n}\n'
    assert check_set(text, "a", 3) == '{\n    "a": 1,\n    "a": 3\n}\n'
    assert set_key(text, "a", 2) == text  # the effective value is already 2


def test_set_key_written_with_escapes():
    text = '{\n    "\\u0061b\\"c": 1\n}\n'
    assert loads(text) == {'ab"c': 1}
    assert check_set(text, 'ab"c', 2) == '{\n    "\\u0061b\\"c": 2\n}\n'


def test_set_values_with_unicode_quotes_and_backslashes():
    for value in ['é漢 "q" \\ back', "/* not a comment */", "// nor this", "line\nbreak", "\u2028"]:
        out = check_set(SETTINGS, "s", value)
        assert out.count("/* inside a value */") == 1


def test_set_value_containing_comments_moves_them_before_property():
    text = '{\n    "a": {\n        // inner\n        "b": 1 /* x */\n    }\n}\n'
    out = check_set(text, "a", 2)
    assert out == '{\n    // inner\n    /* x */\n    "a": 2\n}\n'


def test_delete_key_handles_commas():
    text = '{\n    "a": 1,\n    "b": 2,\n    "c": 3\n}\n'
    assert delete_key(text, "a") == '{\n    "b": 2,\n    "c": 3\n}\n'
    assert delete_key(text, "b") == '{\n    "a": 1,\n    "c": 3\n}\n'
    assert delete_key(text, "c") == '{\n    "a": 1,\n    "b": 2\n}\n'
    assert delete_key(delete_key(delete_key(text, "c"), "a"), "b") == "{\n}\n"
    assert delete_key(text, "zzz") == text


def test_delete_key_single_line():
    assert delete_key('{"a": 1, "b": 2}', "a") == '{"b": 2}'
    assert delete_key('{"a": 1, "b": 2}', "b") == '{"a": 1}'
    assert delete_key('{"a": 1}', "a") == "{}"
    assert delete_key('{"a": 1, "b": 2,}', "b") == '{"a": 1,}'


def test_delete_key_keeps_own_line_comments():
    out = delete_key(SETTINGS, "last")
    assert oracle(out) == {k: v for k, v in oracle(SETTINGS).items() if k != "last"}
    assert "// comment after the last member" not in out  # it trailed the deleted property
    assert '"glob": "src/*.py /* not a comment */",\n    "list": [1, 2, 3,]\n' in out
    for comment in COMMENTS:
        if comment != "// comment after the last member":
            assert comment in out


def test_delete_every_duplicate():
    text = '{\n    "a": 1,\n    // keep me\n    "b": 2,\n    "a": 3\n}\n'
    assert delete_key(text, "a") == '{\n    // keep me\n    "b": 2\n}\n'


def test_delete_crlf_and_bom():
    text = BOM + '{\r\n    "a": 1,\r\n    "b": 2\r\n}\r\n'
    assert delete_key(text, "b") == BOM + '{\r\n    "a": 1\r\n}\r\n'


def test_delete_on_blank_text():
    assert delete_key("", "a") == ""
    assert delete_key("// c\n", "a") == "// c\n"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n    "a": "abc\n}', "2:10"),  # unterminated string
        ('{\n    "a": 1\n    /* never closed\n}', "3:5"),  # unterminated block comment
        ("[1, 2]", "1:1"),  # top-level array
        ('\n\n  "just a string"', "3:3"),
        ("hello", "1:1"),  # garbage
        ('{"a": 1 "b": 2}', "1:9"),
        ('{"a": 1}}', "1:9"),
        ("{,}", "1:2"),
        ('{"a": 1,,}', "1:9"),
    ],
)
def test_invalid_text_raises_with_position(text, where):
    for func in (loads, lambda t: set_key(t, "k", 1), lambda t: delete_key(t, "k")):
        with pytest.raises(JsoncError) as info:
            func(text)
        assert f"line {where}" in str(info.value)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": {"b": null, // x}\n "c": 1}}',  # a `}` inside a line comment is not a closing brace
        '{"a": 1 // x{ \t\n ,}',  # a trailing comma after a line comment ending in spaces
        '{"a": [1, /* ] */ 2, /* } */], /* , */ "b": 2 /* ,} */,}',
        r'{"a": "\\", "b": "\\\" // not a comment", /**/ "c": "/*", "d": "*/",}',
    ],
)
def test_tricky_comment_and_comma_placement(text):
    assert loads(text) == oracle(text)
    check_set(text, "a", {"new": [1]})
    check_set(text, "zz", 1)
    assert oracle(delete_key(text, "a")) == {k: v for k, v in oracle(text).items() if k != "a"}


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(JsoncError):
        loads('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_error_positions_count_after_bom():
    with pytest.raises(JsoncError) as info:
        loads(BOM + '{"a" 1}')
    assert (info.value.line, info.value.column) == (1, 6)


# --- property-based tests ---------------------------------------------------------------------

# No lone surrogates: they cannot be encoded to UTF-8, so no real settings file holds one.
CHARS = st.characters(exclude_categories=("Cs",))
KEYS = st.one_of(
    st.sampled_from(
        ["a", "b", "editor.fontSize", "http://x", "/*", "//", 'q"uote', "back\\slash", ""]
    ),
    st.text(CHARS, max_size=6),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(CHARS, max_size=8),
    st.sampled_from(["http://x", "/* c */", "// c", 'a "q" \\', "\n"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=6,
)


class Doc:
    def __init__(self, text: str, pairs: list, comments: list[str]) -> None:
        self.text = text
        self.pairs = pairs
        self.comments = comments

    @property
    def expected(self) -> dict:
        return dict(self.pairs)

    def __repr__(self) -> str:
        return f"Doc({self.text!r})"


# Characters for comment text: JSON/comment syntax that must not confuse the scanner, plus
# non-ASCII.  No newlines (a // comment would end) and no U+2028/U+2029 (json5 ends a // there).
COMMENT_ALPHABET = '"\\/*,:{}[] \tab#é漢\u00a0\U0001f600'


@st.composite
def jsonc_docs(draw) -> Doc:
    """A random object rendered as JSONC: comments at legal places, trailing commas, layouts.

    The data comes from hypothesis strategies; layout decisions come from a `Random` seeded by a
    drawn integer (hundreds of tiny draws per document made generation the slowest part).
    """
    pairs = draw(st.lists(st.tuples(KEYS, VALUES), max_size=5))
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    newline = rnd.choice(["\n", "\r\n"])
    unit = rnd.choice(["\t", "  ", "    "])
    pretty = rnd.random() < 0.7
    comment_rate = rnd.choice([0.0, 0.1, 0.3, 0.6])
    serial = itertools.count()
    comments: list[str] = []

    def comment() -> str:
        text = f"#{next(serial)}#" + "".join(rnd.choices(COMMENT_ALPHABET, k=rnd.randrange(8)))
        if rnd.random() < 0.5:
            text = "//" + text
        else:
            if rnd.random() < 0.2:
                text += newline + " *"  # a comment over two lines
            text = "/*" + text.replace("*/", "* /") + "*/"
        comments.append(text)
        return text

    def gap(depth: int, *, line_break: bool = False) -> str:
        """Whitespace and comments between two tokens; a // comment is followed by a newline."""
        indent = newline + unit * depth
        out = indent if line_break and pretty else rnd.choice(["", " "])
        while rnd.random() < comment_rate:
            c = comment()
            out += c + (indent if c.startswith("//") else rnd.choice(["", " ", indent]))
        return out

    def string(s: str) -> str:
        style = rnd.choice(["plain", "ascii", "escape"])
        # json5 (the oracle) does not join escaped surrogate pairs, so astral characters stay raw.
        if style == "plain" or any(ord(c) > 0xFFFF for c in s):
            return json.dumps(s, ensure_ascii=False)
        if style == "ascii":
            return json.dumps(s)
        return '"' + "".join(f"\\u{ord(c):04x}" for c in s) + '"'

    def member(k: str, v: object, depth: int) -> str:
        return string(k) + gap(depth) + ":" + gap(depth) + value(v, depth)

    def value(v: object, depth: int) -> str:
        if isinstance(v, dict):
            return container("{", "}", [member(k, x, depth + 1) for k, x in v.items()], depth)
        if isinstance(v, list):
            return container("[", "]", [value(x, depth + 1) for x in v], depth)
        if isinstance(v, str):
            return string(v)
        return json.dumps(v)

    def container(open_: str, close: str, items: list[str], depth: int) -> str:
        out = open_
        for i, item in enumerate(items):
            out += gap(depth + 1, line_break=True) + item + gap(depth + 1)
            if i < len(items) - 1 or rnd.random() < 0.3:
                out += "," + gap(depth + 1)
        return out + gap(depth, line_break=bool(items)) + close

    top = container("{", "}", [member(k, v, 1) for k, v in pairs], 0)
    text = gap(0) + top + gap(0) + rnd.choice(["", newline])
    if rnd.random() < 0.3:
        text = BOM + text
    return Doc(text, pairs, comments)


# 300 examples per property in the full suite; `scripts/test --fast` asks for fewer.
PROPERTY = settings(
    max_examples=int(os.environ.get("WA_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(jsonc_docs(), st.data(), VALUES)
def test_loads_and_set_key_property(doc, data, new_value):
    """loads agrees with json5; set_key sets exactly one key, keeps comments, is idempotent."""
    assert canon(loads(doc.text)) == canon(oracle(doc.text)) == canon(doc.expected)

    existing = [k for k, _ in doc.pairs]
    if existing:  # setting the current value is the identity
        key = data.draw(st.sampled_from(existing), label="current key")
        assert set_key(doc.text, key, doc.expected[key]) == doc.text

    use_existing = existing and data.draw(st.booleans(), label="use existing")
    key = data.draw(st.sampled_from(existing) if use_existing else KEYS, label="key")
    out = set_key(doc.text, key, new_value)
    expected = doc.expected
    expected[key] = new_value
    assert canon(oracle(out)) == canon(expected)
    assert canon(loads(out)) == canon(expected)
    for c in doc.comments:
        assert c in out
    assert set_key(out, key, new_value) == out
    assert out.startswith(BOM) == doc.text.startswith(BOM)
    if "\r\n" in doc.text:
        assert out.count("\n") == out.count("\r\n")
    elif "\n" in doc.text:
        assert "\r" not in out


@PROPERTY
@given(jsonc_docs(), st.data())
def test_delete_key_property(doc, data):
    existing = [k for k, _ in doc.pairs]
    use_existing = existing and data.draw(st.booleans(), label="use existing")
    key = data.draw(st.sampled_from(existing) if use_existing else KEYS, label="key")
    out = delete_key(doc.text, key)
    expected = doc.expected
    expected.pop(key, None)
    assert canon(oracle(out)) == canon(expected)
    assert canon(loads(out)) == canon(expected)
    assert delete_key(out, key) == out
    if key not in doc.expected:
        assert out == doc.text
    # Comments outside the top-level object are never touched.
    for c in doc.comments:
        if doc.text.find(c) < doc.text.find("{") or doc.text.rfind(c) > doc.text.rfind("}"):
            assert c in out
