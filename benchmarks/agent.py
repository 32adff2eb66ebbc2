"""Agent benchmarks: status --short, check and bootstrap (nothing to change) against `python -c pass`,
and the same bootstrap work done by the platform's bash startup script (baseline_startup.sh).

The floor is the agent's own interpreter (`--python`, by default the one running the benchmark:
run it from the agent's venv) started the way the agent is, with `-c pass`; a second row shows the
machine's python3, whose site-packages may make its start-up slower (a flattering floor the
ratios do not use). Every command runs with the real interpreter (not the pyenv shim, whose bash
wrapper would add its own start-up) and the agent through its console script, as Coder would run
it. All of them are interleaved in one run, so machine load hits them alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.home import build_home
from benchmarks.measure import Command, Launcher, interleaved, summarize
from benchmarks.services import service

REPO = Path(__file__).resolve().parent.parent
BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline_startup.sh"
DEFAULT_PYTHON = Path(sys.executable)
SYSTEM_PYTHON = Path("/usr/bin/python3")
SECRET = "bench-provisioner-secret"

PASS = "python -c pass (the agent's interpreter)"
SYSTEM_PASS = "  python3 -c pass (system, for reference)"
STATUS = "workspace-agent status --short"
CHECK = "workspace-agent check"
BOOTSTRAP = "workspace-agent bootstrap (nothing to change)"
PASTED = "  same, key pasted (no provisioner call)"
BASELINE = "bash startup script (baseline)"

TARGETS = {STATUS: 3.0, CHECK: 4.0, BOOTSTRAP: 1.0}  # BOOTSTRAP: × the bash baseline
RSS_TARGET_MB = 40.0


def entry_point(name: str = "workspace-agent") -> str:
    """`module:function` of a console script, from pyproject.toml (what pip would install)."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return str(scripts[name])


def console_script(python: Path, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The `workspace-agent` console script beside `python`, if it runs today's entry point.

    An editable install made before pyproject.toml changed its entry point keeps the old one
    (and skips the status fast path); then a script of the same shape as pip's, with the current
    entry point, is written into `workdir` and used instead, and the results say so.
    """
    target = entry_point()
    module, func = target.split(":")
    installed = python.parent / "workspace-agent"
    expected_import = f"from {module} import {func}"
    info: dict[str, Any] = {"entry_point": target, "installed": str(installed)}
    if installed.is_file() and expected_import in installed.read_text(errors="replace"):
        info["used"] = str(installed)
        return installed, info
    script = workdir / "bin" / "workspace-agent"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n{expected_import}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"
    )
    script.chmod(0o755)
    info["used"] = str(script)
    info["note"] = (f"{installed} does not run {target} (a stale editable install): "
                    "used a script of the same shape with the current entry point")
    return script, info


def tree_digest(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """relative path → mode + sha256 of every file under root (skipping some directories)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip) or not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(root))] = f"{path.stat().st_mode:o}:{digest}"
    return found


def base_env(python: Path) -> dict[str, str]:
    """A small, explicit environment: nothing of the caller's shell leaks into the numbers."""
    return {"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO)}


def workspace_env(base: Mapping[str, str], home: Path, provisioner: str, workdir: Path) -> dict[str, str]:
    policy = workdir / "policy.toml"
    policy.touch()
    return {
        **base,
        "HOME": str(home),
        "CODER_WORKSPACE_ID": "0b6b2c1e-bench-4c1f-9d1e-000000000001",
        "CODER_WORKSPACE_NAME": "bench",
        "CODER_WORKSPACE_OWNER": "alice",
        "PROVISIONER_URL": provisioner,
        "PROVISIONER_SECRET": SECRET,
        "AI_GATEWAY_URL": "http://litellm:4000",
        "AI_MODEL": "claude-sonnet",
        "AI_ASSISTANT": "both",
        "ENFORCEMENT_LEVEL": "standard",
        "WORKSPACE_AGENT_POLICY": str(policy),
        "WORKSPACE_AGENT_MANAGED_DIR": str(workdir / "etc-opencode" / home.name),
    }


def _prime(agent: Path, agent_env: dict[str, str], bash_env: dict[str, str]) -> dict[str, Any]:
    """First starts (they do change things), then proof that bootstrap now has nothing to do."""
    def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, check=False, text=True, timeout=120)

    first = run([str(agent), "bootstrap", "-q"], agent_env)
    if first.returncode != 0:
        raise RuntimeError(f"first bootstrap failed ({first.returncode}): {first.stderr}")
    second = run([str(agent), "bootstrap", "--json", "--detailed-exitcodes"], agent_env)
    counts = json.loads(second.stdout)["counts"] if second.stdout.startswith("{") else {}
    if second.returncode != 0 or counts.get("corrected"):
        raise RuntimeError(f"second bootstrap still changes things ({second.returncode}): {counts}")
    check = run([str(agent), "check", "-q"], agent_env)
    if check.returncode != 0:
        raise RuntimeError(f"check after bootstrap is not compliant ({check.returncode}): {check.stdout}")
    status = run([str(agent), "status", "--short"], agent_env)
    baseline = run(["/bin/bash", str(BASELINE_SCRIPT)], bash_env)
    if baseline.returncode != 0 or "WARNING" in baseline.stdout:
        raise RuntimeError(f"baseline script failed: {baseline.stdout}{baseline.stderr}")
    return {"rules": counts.get("total"), "status_line": status.stdout.strip(),
            "key_source": json.loads(second.stdout)["key"]["source"]}


def run_agent_suite(runs: int, python: Path = DEFAULT_PYTHON, workdir: Path | None = None) -> dict[str, Any]:
    """Measure the five commands interleaved; returns plain data for the table and the JSON file."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-agent-"))
    workdir.mkdir(parents=True, exist_ok=True)
    agent, script_info = console_script(python, workdir)
    base = base_env(python)
    provisioner_argv = [str(python), "-m", "tests.standins.provisioner", "--port", "0",
                        "--mode", "normal", "--secret", SECRET]
    with service(provisioner_argv, base, cwd=REPO, log=workdir / "provisioner.log") as prov:
        homes = {name: workdir / name for name in ("agent-home", "bash-home")}
        made = {name: build_home(home) for name, home in homes.items()}["agent-home"]
        agent_env = workspace_env(base, homes["agent-home"], prov.url, workdir)
        bash_env = workspace_env(base, homes["bash-home"], prov.url, workdir)
        primed = _prime(agent, agent_env, bash_env)
        state_dir = homes["agent-home"] / ".local" / "state" / "workspace-agent"
        key = (homes["agent-home"] / ".config" / "workspace-agent" / "litellm.key").read_text().strip()
        before = tree_digest(homes["agent-home"], skip=(state_dir,))
        commands = [
            Command(PASS, (str(python), "-c", "pass"), agent_env),
            *([Command(SYSTEM_PASS, (str(SYSTEM_PYTHON), "-c", "pass"), base)]
              if SYSTEM_PYTHON.is_file() and SYSTEM_PYTHON.resolve() != python.resolve() else []),
            Command(STATUS, (str(agent), "status", "--short"), agent_env),
            Command(CHECK, (str(agent), "check", "-q"), agent_env),
            Command(BOOTSTRAP, (str(agent), "bootstrap", "-q"), agent_env),
            # The same run without the network client: shows what the provisioner call costs.
            Command(PASTED, (str(agent), "bootstrap", "-q"), {**agent_env, "LITELLM_API_KEY": key}),
            Command(BASELINE, ("/bin/bash", str(BASELINE_SCRIPT)), bash_env),
        ]
        load_before = os.getloadavg()
        with Launcher(str(python)) as launcher:
            samples = interleaved(launcher, commands, runs, scratch=workdir)
            launcher_rss = launcher.own_rss_kb
        load_after = os.getloadavg()
        unchanged = tree_digest(homes["agent-home"], skip=(state_dir,)) == before
    stats = {name: summarize(s) for name, s in samples.items()}
    base_wall, base_cpu = stats[PASS]["wall"].median, stats[PASS]["cpu"].median
    rows: dict[str, Any] = {}
    for name, st in stats.items():
        rows[name] = {
            "wall_ms": st["wall"].as_dict(1000),
            "cpu_ms": st["cpu"].as_dict(1000),
            "peak_rss_mb": st["rss"].as_dict(1 / 1024),
            "wall_ratio": round(st["wall"].median / base_wall, 2),
            "cpu_ratio": round(st["cpu"].median / base_cpu, 2),
        }
    agent_rss = max(stats[n]["rss"].max for n in (STATUS, CHECK, BOOTSTRAP)) / 1024
    bootstrap_vs_bash = stats[BOOTSTRAP]["wall"].median / stats[BASELINE]["wall"].median
    rows[BOOTSTRAP]["wall_vs_baseline"] = round(bootstrap_vs_bash, 2)
    rows[BOOTSTRAP]["cpu_vs_baseline"] = round(stats[BOOTSTRAP]["cpu"].median / stats[BASELINE]["cpu"].median, 2)
    checks = {
        f"status --short ≤ {TARGETS[STATUS]:g}× python -c pass (wall median; now {rows[STATUS]['wall_ratio']:.2f}×)":
            rows[STATUS]["wall_ratio"] <= TARGETS[STATUS],
        f"check ≤ {TARGETS[CHECK]:g}× python -c pass (wall median; now {rows[CHECK]['wall_ratio']:.2f}×)":
            rows[CHECK]["wall_ratio"] <= TARGETS[CHECK],
        f"agent peak RSS ≤ {RSS_TARGET_MB:.0f} MB (max of all runs)": agent_rss <= RSS_TARGET_MB,
        f"bootstrap ≤ {TARGETS[BOOTSTRAP]:g}× the bash baseline (wall median; now {bootstrap_vs_bash:.2f}×)":
            bootstrap_vs_bash <= TARGETS[BOOTSTRAP],
    }
    return {
        "runs": runs,
        "python": str(python),
        "console_script": script_info,
        "home": made,
        "primed": primed,
        "agent_home_unchanged_by_bootstrap_runs": unchanged,
        "launcher_rss_mb": round(launcher_rss / 1024, 1),  # no peak RSS below it can be seen
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "commands": rows,
        "agent_peak_rss_mb": round(agent_rss, 1),
        "targets": checks,
    }
