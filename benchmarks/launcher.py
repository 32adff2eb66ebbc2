"""A small process that starts benchmarked commands and measures them (run with `python -I -S`).

Why a separate process: on Linux a child's peak RSS (ru_maxrss) starts at the RSS of the process
it was forked from, so a command started directly by the benchmark (20+ MB of Python with the
harness loaded) would never show less than that. This launcher imports only `os`, `sys`, `time`
and `json` (about 9 MB), forks, execs the command and reports what wait4 says.

Protocol: one JSON object per line on stdin, {"argv", "env", "cwd", "stdout"}; one JSON object
per line on stdout, {"wall_s", "cpu_s", "maxrss_kb", "exit_code"} or {"error"}. It stops at EOF.
"""

import json
import os
import sys
import time


def _child(job):
    try:
        if job.get("cwd"):
            os.chdir(job["cwd"])
        null = os.open(os.devnull, os.O_RDWR)
        out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if job.get("stdout") else null
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.execve(job["argv"][0], job["argv"], job["env"])
    except BaseException as exc:  # noqa: BLE001 - exec failed: say so through the exit code and the output file
        os.write(2, f"cannot run {job['argv'][0]}: {exc}\n".encode())
    os._exit(127)


def _measure(job):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(job)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "exit_code": os.waitstatus_to_exitcode(status),
    }


def main():
    own = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    print(json.dumps({"ready": True, "launcher_rss_kb": own}), flush=True)
    for line in sys.stdin:
        try:
            reply = _measure(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - a bad job must not kill the launcher
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
