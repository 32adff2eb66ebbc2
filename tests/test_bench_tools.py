"""wrk script and output parsing, percentiles, and the fleet verdict: pure parts, as tables."""

from __future__ import annotations

import re

import pytest

from benchmarks import wrk
from benchmarks.fleet import slope, verdict
from benchmarks.loadgen import percentiles
from workspace_agent import wire

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.31ms    2.02ms  40.12ms   87.00%
    Req/Sec     6.07k   412.33     6.71k    80.00%
  Latency Distribution
     50%    4.88ms
     75%    5.90ms
     90%    7.98ms
     99%   19.24ms
  60420 requests in 10.00s, 9.80MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   6041.87
Transfer/sec:      0.98MB
"""


def test_parse_wrk_output() -> None:
    parsed = wrk.parse_output(WRK_OUTPUT)
    assert parsed == {"throughput_rps": 6041.87, "requests": 60420, "p50_ms": 4.88, "p90_ms": 7.98,
                      "p99_ms": 19.24, "non_2xx": 5, "socket_errors": 3}
    assert wrk.parse_output(WRK_OUTPUT.replace("19.24ms", "1.20s"))["p99_ms"] == 1200.0
    assert wrk.parse_output(WRK_OUTPUT.replace("4.88ms", "880.00us"))["p50_ms"] == 0.88
    with pytest.raises(ValueError, match="no Requests/sec"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused")


def test_lua_script_template_rebuilds_a_valid_report() -> None:
    script = wrk.lua_script({"ws-a": "tok-a"}, "/api/v1/reports", 1)
    parts = re.search(r"local parts = \{(.*)\}\nlocal order", script, re.DOTALL).group(1)
    pieces = re.findall(r"\[==\[(.*?)\]==\]", parts, re.DOTALL)
    order = [int(x) for x in re.search(r"local order = \{(.*)\}", script).group(1).split(",")]
    values = {1: "abcdef0123-0-1", 2: "ws-a", 3: "2026-01-01T00:00:00Z"}
    body = pieces[0] + "".join(values[o] + pieces[i + 1] for i, o in enumerate(order))
    report = wire.Report.model_validate_json(body)
    assert report.workspace.id == "ws-a" and report.report_id == "abcdef0123-0-1"
    assert '{[==[ws-a]==],[==[tok-a]==]}' in script


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}),
        ([0.005], {"p50_ms": 5.0, "p90_ms": 5.0, "p99_ms": 5.0, "max_ms": 5.0}),
        ([i / 1000 for i in range(100, 0, -1)], {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "max_ms": 100.0}),
    ],
)
def test_percentiles_nearest_rank(values: list[float], expected: dict[str, float | None]) -> None:
    assert percentiles(values) == expected


def test_slope() -> None:
    assert slope([(0, 5), (1, 5), (2, 5)]) == 0
    assert slope([(0, 0), (1, 2), (2, 4), (3, 6)]) == pytest.approx(2.0)
    assert slope([(1, 3)]) == 0


def _run(**over: object) -> dict[str, object]:
    base = {"offered_rps": 100.0, "errors": 0, "answered": 1000, "due": 1000, "backlog_slope_per_s": 0.1,
            "backlog_max": 40}
    return base | over


@pytest.mark.parametrize(
    ("over", "held", "reason"),
    [
        ({}, True, None),
        ({"errors": 3}, False, "3 errors"),
        ({"backlog_slope_per_s": 5.0}, False, "backlog grows by 5.0"),
        ({"backlog_max": 400}, False, "backlog reached 400"),
    ],
)
def test_verdict(over: dict[str, object], held: bool, reason: str | None) -> None:
    ok, why = verdict(_run(**over))
    assert ok is held
    assert (reason is None and why == []) or any(reason in w for w in why)
