"""What `workspace-agent watch` costs: flip → restored latency, idle CPU, resident memory.

A real watcher process runs on a realistic home (benchmarks/home.py: a 300-line JSONC User
settings.json) after a real bootstrap. Each flip sets `chat.disableAIFeatures` to false, half of
them in place (as VS Code saves settings) and half by rename-replacement (as many editors save);
the time to "restored" ends when the benchmark's own inotify watch sees the file hold `true`
again. A loopback stand-in of the drift server's corrections route accepts every correction, so
deliveries (one short-lived child process per attempt) happen as they would in production. Then
the watcher is left alone for `idle_s` and its CPU time is read from /proc; memory is its VmRSS
(all resident pages, shared libraries included), RssAnon (its own) and VmHWM (peak).

    python -m benchmarks --only watch
    python -m benchmarks.watch --flips 100 --idle 60
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.agent import REPO, base_env
from benchmarks.home import build_home

KEY = "chat.disableAIFeatures"
TARGET_P99_MS = 1000.0
TARGET_RSS_MB = 20.0
TARGET_IDLE_PERCENT = 0.1
FLIP_BOUND_S = 10.0  # a flip not restored in this long counts as failed (and stops the run)
GAP_S = 0.1  # between a restore and the next flip: each flip is its own burst


WORKSPACE_ID = "bench-watch"


@contextlib.contextmanager
def corrections_sink() -> Iterator[tuple[str, list[int]]]:
    """A loopback stand-in of POST /api/v1/corrections: answers 200, counts what it got."""
    received: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(min(int(self.headers.get("content-length", "0")), 1024 * 1024))
            received.append(len(json.loads(body).get("corrections", [])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _env(python: Path, home: Path, workdir: Path, drift_url: str) -> dict[str, str]:
    policy = workdir / "policy.toml"
    policy.touch()
    return {
        **base_env(python),
        "HOME": str(home),
        "DRIFT_SERVER_URL": drift_url,
        "CODER_WORKSPACE_ID": WORKSPACE_ID,
        "LITELLM_API_KEY": "sk-bench-0000000000000000watch",
        "AI_GATEWAY_URL": "http://litellm:4000",
        "AI_ASSISTANT": "both",
        "WORKSPACE_AGENT_POLICY": str(policy),
        "WORKSPACE_AGENT_MANAGED_DIR": str(workdir / "etc-opencode"),
        "WORKSPACE_AGENT_CLAUDE_MANAGED_DIR": str(workdir / "etc-claude-code"),
    }


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile, VmHWM of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[name] = round(int(rest.split()[0]) / 1024, 1)
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _holds(path: Path, want: object) -> bool:
    from workspace_agent import jsonc

    try:
        return jsonc.loads(path.read_text()).get(KEY) == want
    except (OSError, jsonc.JsoncError):
        return False


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _flip(settings: Path, original: str, by_rename: bool) -> None:
    flipped = original.replace(f'"{KEY}": true', f'"{KEY}": false')
    if by_rename:
        temp = settings.with_name(".settings.json.bench")
        temp.write_text(flipped)
        os.replace(temp, settings)
    else:
        settings.write_text(flipped)


def _wait_restored(notify: Any, settings: Path, bound: float) -> float | None:
    """Seconds until the file holds true again (seen through inotify), None after `bound`."""
    started = time.perf_counter()
    while True:
        if _holds(settings, True):
            return time.perf_counter() - started
        left = bound - (time.perf_counter() - started)
        if left <= 0:
            return None
        ready, _, _ = select.select([notify.fd], [], [], left)
        if ready:
            notify.read()


def run_watch_suite(python: Path, workdir: Path, *, flips: int = 100, idle_s: float = 60.0) -> dict[str, Any]:
    with corrections_sink() as (drift_url, received):
        result = _run(python, workdir, drift_url, flips=flips, idle_s=idle_s)
    result["corrections_delivered"] = sum(received)
    return result


def _run(python: Path, workdir: Path, drift_url: str, *, flips: int, idle_s: float) -> dict[str, Any]:
    from workspace_agent import inotify

    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    made = build_home(home)
    env = _env(python, home, workdir, drift_url)
    first = subprocess.run([str(python), "-m", "workspace_agent", "bootstrap", "-q"], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=120, check=False)
    if first.returncode != 0:
        raise RuntimeError(f"bootstrap failed (exit {first.returncode}): {first.stderr.strip()[-500:]}")
    token = home / ".config" / "workspace-agent" / "drift-token.json"  # as `report` leaves it after enrolling
    token.write_text(json.dumps({"server_url": drift_url, "workspace_id": WORKSPACE_ID, "token": "wat_bench"}))
    settings = home / ".local" / "share" / "code-server" / "User" / "settings.json"
    original = settings.read_text()
    log = workdir / "watch.err"
    with log.open("wb") as err:
        proc = subprocess.Popen([str(python), "-m", "workspace_agent", "watch"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        started = time.monotonic()
        while "watch: watching" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"the watcher did not start: {log.read_text(errors='replace')[-500:]}")
            time.sleep(0.02)
        load_before = os.getloadavg()
        latencies: list[float] = []
        failed = 0
        with inotify.Inotify() as notify:
            notify.add_dir(settings.parent)
            for n in range(flips):
                notify.read()
                _flip(settings, original, by_rename=n % 2 == 1)
                took = _wait_restored(notify, settings, FLIP_BOUND_S)
                if took is None:
                    failed += 1
                    break
                latencies.append(took * 1000)
                time.sleep(GAP_S)
        memory_after_flips = _proc_status(proc.pid)
        time.sleep(3.0)  # the last deliveries and log lines settle
        cpu_before = _cpu_s(proc.pid)
        time.sleep(idle_s)
        cpu_idle = _cpu_s(proc.pid) - cpu_before
        memory = _proc_status(proc.pid)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    p99 = _percentile(latencies, 0.99) if latencies else None
    return {
        "flips": flips,
        "restored": len(latencies),
        "failed": failed,
        "settings_json_lines": made["settings_json_lines"],
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p99": round(p99, 1) if p99 is not None else None,
            "max": round(max(latencies), 1) if latencies else None,
            "min": round(min(latencies), 1) if latencies else None,
        },
        "idle_s": idle_s,
        "idle_cpu_ms": round(cpu_idle * 1000, 1),
        "idle_cpu_percent": round(100 * cpu_idle / idle_s, 3) if idle_s else None,
        "memory_mb": memory,
        "memory_mb_after_flips": memory_after_flips,
        "exit_code_on_sigterm": exit_code,
        "load_avg_before": [round(x, 2) for x in load_before],
        "goals": {"p99_ms": TARGET_P99_MS, "rss_mb": TARGET_RSS_MB, "idle_cpu_percent": TARGET_IDLE_PERCENT},
        "targets": {
            f"flip → restored p99 ≤ {TARGET_P99_MS:.0f} ms, every flip restored": (
                p99 is not None and p99 <= TARGET_P99_MS and failed == 0),
            f"idle CPU ≈ 0 (< {TARGET_IDLE_PERCENT}% of a core)": (
                idle_s > 0 and 100 * cpu_idle / idle_s < TARGET_IDLE_PERCENT),
            f"resident memory (VmRSS) ≤ {TARGET_RSS_MB:.0f} MB": memory.get("VmRSS", 1e9) <= TARGET_RSS_MB,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flips", type=int, default=100)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="workspace-agent-bench-watch-") as work:
        result = run_watch_suite(args.python, Path(work), flips=args.flips, idle_s=args.idle)
    from benchmarks.table import targets, watch_table

    print(json.dumps(result, indent=1))
    print("\n".join([*watch_table(result), "  Targets:", *targets(result)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
