"""Hostile input: oversized and deeply nested bodies, broken encodings, unicode edge cases and
SQL-looking strings are either refused with a 4xx and a sentence or stored verbatim and shown
escaped; never a 5xx, never executed, never a changed table. Both databases."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.server.conftest import ADMIN, SECRET, Api, make_report, rule
from workspace_agent import wire

pytestmark = pytest.mark.anyio
HEADERS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


class Dangers(HTMLParser):
    """What a browser would run in a page: script tags, event handler attributes, script URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed", "svg", "img"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                    ("javascript:", "data:", "vbscript:")):
                self.found.append(f"<{tag} {name}={value}>")


def dangers(html: str) -> list[str]:
    parser = Dangers()
    parser.feed(html)
    return parser.found


async def _post_raw(api: Api, token: str, body: bytes) -> Any:
    return await api.client.post(wire.REPORTS_PATH, content=body,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def _good() -> dict[str, Any]:
    return make_report("ws-1", [rule("a", "drift", "x", "y")])


# -- refused: size, depth, encoding -------------------------------------------------------------------


BROKEN: dict[str, Any] = {
    "nested 100000 deep": lambda: json.dumps(_good())[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nested 300 deep in notes": lambda: json.dumps(_good()).replace('"notes": []', '"notes": ' + "[" * 300 + "]" * 300),
    "a lone surrogate escape": lambda: json.dumps(_good()).replace('"before": "x"', '"before": "\\udfff"'),
    "a number of 5000 digits": lambda: json.dumps(_good()).replace('"exit_code": 2', '"exit_code": ' + "9" * 5000),
    "1e999999": lambda: json.dumps(_good()).replace('"exit_code": 2', '"exit_code": 1e999999'),
    "latin-1 bytes": lambda: json.dumps(_good()).replace('"owner": "alice"', '"owner": "caf\u00e9"').encode("latin-1"),
    "a BOM": lambda: "\ufeff" + json.dumps(_good()),
    "NUL in a rule value": lambda: json.dumps(_good()).replace('"before": "x"', '"before": "a\\u0000b"'),
    "NUL in the workspace name": lambda: json.dumps(_good()).replace('"name": "ws-1"', '"name": "ws\\u00001"'),
    "not JSON at all": lambda: b"\x00\x01\x02\xff" * 100,
    "an empty body": lambda: b"",
    "JSON null": lambda: b"null",
    "a string instead of a time": lambda: json.dumps({**_good(), "finished_at": "yesterday"}),
    "a number instead of a time": lambda: json.dumps({**_good(), "finished_at": 1700000000}),
    "a string instead of a number": lambda: json.dumps({**_good(), "exit_code": "2"}),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_broken_bodies_are_422_and_change_nothing(api: Api, case: str) -> None:
    token = await api.enroll("ws-1")
    before = api.snapshot()
    body = BROKEN[case]()
    response = await _post_raw(api, token, body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
    assert response.status_code == 422, response.text[:300]
    answer = response.json()
    assert answer["reason"] == "invalid" and answer["detail"].startswith("the report is not valid")
    assert api.snapshot() == before


async def test_oversized_enrollment_is_413(api: Api) -> None:
    before = api.snapshot()
    body = {"workspace": {"id": "ws-big", "name": "n", "owner": "o"}, "agent_version": "0", "pad": "x" * 20_000}
    response = await api.client.post(wire.ENROLL_PATH, json=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
    assert api.snapshot() == before


async def test_a_body_that_claims_to_be_huge_is_refused_before_it_is_read(api_factory: Any) -> None:
    async with api_factory(max_body_bytes=4096) as api:
        token = await api.enroll("ws-1")

        async def trickle() -> Any:  # would take forever: the server must not wait for it
            yield b"{"

        response = await api.client.post(wire.REPORTS_PATH, content=trickle(), headers={
            "Authorization": f"Bearer {token}", "Content-Length": str(10**12)})
        assert response.status_code == 413


# -- stored verbatim: unicode and SQL-looking text -------------------------------------------------------

VERBATIM = [
    "'; DROP TABLE workspaces; --",
    "Robert'); DELETE FROM reports; --",
    "1' OR '1'='1",
    "%",
    "_",
    "\\",
    "a\\%b",
    "\" OR \"\"=\"",
    "ws\u202egnp.exe",  # right-to-left override
    "👩\u200d💻 dev",  # 4-byte emoji joined by a zero-width joiner
    "e\u0301 vs \u00e9",  # decomposed and composed é stay different
    "\u200b\ufeff",  # zero-width space and a BOM inside text
    "tab\tnew\nline",
    "x" * 200,  # at the bound
    "ﬁ Ω Å",  # compatibility and canonical look-alikes
]


@pytest.mark.parametrize("text", VERBATIM, ids=[f"text{n}" for n in range(len(VERBATIM))])
async def test_odd_text_is_stored_and_returned_verbatim(api: Api, text: str) -> None:
    workspace_id = "ws-" + str(abs(hash(text)))[:10]
    token = await api.enroll(workspace_id, name=text, owner=text)
    body = make_report(workspace_id, [rule(text, "drift", text, text, target=text, message=text)], name=text, owner=text,
                       level=text[:50], key_level=text[:50])
    assert (await api.report(token, body)).status_code == 200
    detail = (await api.admin(f"{wire.WORKSPACES_PATH}/{workspace_id}")).json()
    assert detail["name"] == text and detail["owner"] == text
    stored = {r["rule_id"]: r for r in detail["rules"]}[text]
    assert (stored["before"], stored["after"], stored["target"], stored["message"]) == (text, text, text, text)
    assert api.rows()["workspaces"] == 1, "no table lost, no row added elsewhere"


async def test_search_wildcards_and_quotes_are_literal(api: Api) -> None:
    names = {"ws-pct": "100% done", "ws-und": "snake_case", "ws-plain": "plain", "ws-q": "it's"}
    for workspace_id, name in names.items():
        token = await api.enroll(workspace_id, name=name, owner="o")
        assert (await api.report(token, make_report(workspace_id, [rule("a")], name=name, owner="o"))).status_code == 200

    async def found(**params: str) -> set[str]:
        answer = await api.admin(wire.WORKSPACES_PATH, **params)
        assert answer.status_code == 200, answer.text
        return {w["id"] for w in answer.json()["workspaces"]}

    assert await found(q="%") == {"ws-pct"}
    assert await found(q="_") == {"ws-und"}
    assert await found(q="'") == {"ws-q"}
    assert await found(q="' OR '1'='1") == set()
    assert await found(owner="' OR '1'='1") == set()
    assert await found(level="standard' --") == set()
    assert len(await found()) == 4


async def test_nul_in_filters_and_ids_is_refused_not_a_crash(api: Api) -> None:
    await api.enroll("ws-1")
    for params in ({"q": "a\x00b"}, {"owner": "\x00"}, {"level": "x\x00"}):
        answer = await api.admin(wire.WORKSPACES_PATH, **params)
        assert answer.status_code == 422 and "NUL" in answer.json()["detail"]
    assert (await api.admin(f"{wire.WORKSPACES_PATH}/ws%001")).status_code == 404
    assert (await api.admin(f"{wire.WORKSPACES_PATH}/ws%001/revoke", method="POST")).status_code == 404
    page = await api.client.get("/", params={"q": "\x00", "offset": "9" * 40}, headers=HEADERS_ADMIN)
    assert page.status_code == 200
    assert (await api.client.get("/workspaces/ws%00", headers=HEADERS_ADMIN)).status_code == 404
    assert (await api.client.get("/", params={"offset": "²"}, headers=HEADERS_ADMIN)).status_code == 200
    assert (await api.admin(wire.WORKSPACES_PATH, offset=str(2**63))).status_code == 422


# -- pages: everything escaped, nowhere to inject ------------------------------------------------------

VECTORS = {
    "script": "<script>alert(1)</script>",
    "attribute": "\" onmouseover=\"alert(2)\" x=\"",
    "single quote attribute": "' autofocus onfocus='alert(3)' '",
    "img": "<img src=x onerror=alert(4)>",
    "javascript url": "javascript:alert(5)",
    "closing textarea": "</textarea><svg onload=alert(6)>",
}


@pytest.mark.parametrize("vector", list(VECTORS))
async def test_every_shown_field_is_escaped(api: Api, vector: str) -> None:
    text = VECTORS[vector]
    workspace_id = f"ws-{vector.replace(' ', '-')}-{text[:20]}"
    token = await api.enroll(workspace_id, name=text, owner=text)
    body = make_report(workspace_id, [rule(text, "drift", text, text, target=text, message=text)],
                       name=text, owner=text, level=text[:50], key_level=text[:50])
    body["notes"] = [text]
    body["agent_version"] = text[:50]
    assert (await api.report(token, body)).status_code == 200
    pages = [
        await api.client.get("/", headers=HEADERS_ADMIN),
        await api.client.get("/", params={"q": text, "owner": text, "level": text}, headers=HEADERS_ADMIN),
        await api.client.get(f"/workspaces/{workspace_id}", headers=HEADERS_ADMIN),
        await api.client.get("/workspaces/" + text.replace("/", ""), headers=HEADERS_ADMIN),
        await api.client.get("/login", params={"next": text}),
    ]
    for page in pages:
        assert page.status_code in (200, 404), page.status_code
        html = page.text
        if any(c in text for c in "<>\"'"):
            assert text not in html, f"{vector} shown unescaped in {page.url}"
        assert dangers(html) == [], page.url
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
