"""Maximum throughput with `wrk` (Debian package `wrk`, a C load generator with Lua scripting).

wrk costs the server's CPUs far less than a Python client would, so the server is the limit.
The Lua script sends real drift reports: every request has its own report id (a repeat would be
the server's cheap duplicate path), today's timestamp, and the token of the workspace it names,
round robin over the enrolled workspaces.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from benchmarks import reports

_PLACEHOLDERS = ("RIDRIDRID", "WSIDWSIDWSID", "STAMPSTAMP")

_SCRIPT = """\
local tokens = {%(tokens)s}
local parts = {%(parts)s}
local order = {%(order)s}
local path = %(path)s
local run = %(run)s
local counter = 0
tid = 0  -- a global: setup() sets it in each thread's own Lua state
local nthreads = 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  nthreads = %(threads)d
end

function request()
  counter = counter + 1
  local pick = tokens[((counter * nthreads) + tid) %% #tokens + 1]
  local stamp = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ")
  local values = {run .. "-" .. tid .. "-" .. counter, pick[1], stamp}
  local body = parts[1]
  for i = 1, #order do
    body = body .. values[order[i]] .. parts[i + 1]
  end
  return wrk.format("POST", path, {["Authorization"] = "Bearer " .. pick[2],
                                   ["Content-Type"] = "application/json"}, body)
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_script(tokens: dict[str, str], path: str, threads: int) -> str:
    """A wrk script posting reports for `tokens` ({workspace id: token}) to `path`."""
    template = json.dumps(reports.report(_PLACEHOLDERS[1], report_id=_PLACEHOLDERS[0], at=_PLACEHOLDERS[2]),
                          separators=(",", ":"))
    pieces = re.split("(" + "|".join(_PLACEHOLDERS) + ")", template)
    parts = pieces[0::2]
    order = [_PLACEHOLDERS.index(p) + 1 for p in pieces[1::2]]
    pairs = tokens.items() if tokens else [("none", "none")]
    return _SCRIPT % {
        "tokens": ",".join("{" + _lua_string(w) + "," + _lua_string(t) + "}" for w, t in pairs),
        "parts": ",".join(_lua_string(p) for p in parts),
        "order": ",".join(str(o) for o in order),
        "path": _lua_string(path),
        "run": _lua_string(uuid.uuid4().hex[:10]),
        "threads": threads,
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_output(text: str) -> dict[str, Any]:
    """Requests/s, latency percentiles and errors from `wrk --latency` output."""
    out: dict[str, Any] = {}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rate:
        raise ValueError(f"wrk printed no Requests/sec:\n{text[-1500:]}")
    out["throughput_rps"] = float(rate.group(1))
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if total:
        out["requests"] = int(total.group(1))
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.MULTILINE)
        if found:
            out[f"p{pct}_ms"] = _ms(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(x) for x in sock.groups()) if sock else 0
    return out


def available() -> str | None:
    return shutil.which("wrk")


def run(url: str, path: str, tokens: dict[str, str], *, duration: float, connections: int, threads: int,
        workdir: Path) -> dict[str, Any]:
    """Run wrk against url+path for `duration` seconds; parsed results (raises if wrk failed)."""
    exe = available()
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    script = workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    script.write_text(lua_script(tokens, path, threads))
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "--latency",
           "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    result = parse_output(done.stdout)
    result.update(duration_s=duration, connections=connections, threads=threads)
    return result
