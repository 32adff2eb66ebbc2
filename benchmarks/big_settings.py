"""A user settings.json of many keys (issue 14): `plan` and `bootstrap` time and peak RSS.

The file is what a hostile or just very busy user could leave: N top-level keys (about 20 bytes
each, so 400,000 keys are 8 MB), a comment at the top, none of the locked keys yet. `plan` reads
and folds every lockdown rule over it (and renders the diff); `bootstrap` also writes it back.
Target: 8 MB / 400,000 keys in at most 2 s and 100 MB peak RSS, growing linearly. The time
target is judged on CPU time (user + system): this machine is shared, and wall time under other
load says more about the neighbours than about the agent; wall time is printed beside it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks.measure import Launcher

SIZES = (50_000, 100_000, 200_000, 400_000)
QUICK_SIZES = (10_000, 100_000)
KEY = "sk-bench-Zq8mV3pL0rT6yW1xN4bK"
TARGET_S = 2.0
TARGET_MB = 100.0


def settings_text(keys: int) -> str:
    """`keys` members of about 20 bytes each, after a comment (JSONC, as VS Code writes it)."""
    lines = ["// a very large settings file", "{"]
    lines += [f'  "s.k{n:07d}": {n % 1000},' for n in range(keys)]
    lines.append('  "editor.fontSize": 14')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _home(root: Path, keys: int) -> dict[str, str]:
    if root.exists():
        shutil.rmtree(root)
    home = root / "home"
    settings = home / ".local/share/code-server/User/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(settings_text(keys))
    (root / "policy.toml").write_text("")
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "WORKSPACE_AGENT_POLICY": str(root / "policy.toml"),
        "WORKSPACE_AGENT_MANAGED_DIR": str(root / "etc-opencode"),
        "WORKSPACE_AGENT_CLAUDE_MANAGED_DIR": str(root / "etc-claude-code"),
        "LITELLM_API_KEY": KEY,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


def run_big_settings_suite(python: str, workdir: Path, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """One `plan` and one `bootstrap` per size on a fresh home; wall, CPU and peak RSS of each."""
    rows: list[dict[str, Any]] = []
    with Launcher(python) as launcher:
        for keys in sizes:
            env = _home(workdir / f"k{keys}", keys)
            size = Path(env["HOME"], ".local/share/code-server/User/settings.json").stat().st_size
            row: dict[str, Any] = {"keys": keys, "bytes": size}
            for command in ("plan", "bootstrap"):
                sample = launcher.run([python, "-m", "workspace_agent", command, "-q"], env)
                if sample.exit_code not in (0, 2):
                    raise RuntimeError(f"{command} on {keys} keys exited {sample.exit_code}")
                row[command] = {"wall_s": round(sample.wall_s, 3), "cpu_s": round(sample.cpu_s, 3),
                                "maxrss_mb": round(sample.maxrss_kb / 1024, 1)}
            rows.append(row)
            print(f"big settings: {keys} keys done", file=sys.stderr, flush=True)
    biggest = max(rows, key=lambda r: r["keys"])
    worst_cpu = max(biggest["plan"]["cpu_s"], biggest["bootstrap"]["cpu_s"])
    worst_wall = max(biggest["plan"]["wall_s"], biggest["bootstrap"]["wall_s"])
    worst_mb = max(biggest["plan"]["maxrss_mb"], biggest["bootstrap"]["maxrss_mb"])
    smallest = min(rows, key=lambda r: r["keys"])
    per_key = [(r["bootstrap"]["cpu_s"] - smallest["bootstrap"]["cpu_s"]) / (r["keys"] - smallest["keys"]) * 1e6
               for r in rows if r is not smallest]
    return {
        "rows": rows,
        "cpu_us_per_key_above_smallest": [round(x, 2) for x in per_key],
        "targets": {
            f"{biggest['keys']} keys ({biggest['bytes'] / 1e6:.1f} MB) planned and merged in ≤ {TARGET_S:g} s "
            f"(worst CPU {worst_cpu:.2f} s; wall {worst_wall:.2f} s)": worst_cpu <= TARGET_S,
            f"… and ≤ {TARGET_MB:g} MB peak RSS (worst {worst_mb:.0f} MB)": worst_mb <= TARGET_MB,
        },
    }


def big_settings_table(section: dict[str, Any]) -> list[str]:
    lines = ["Big user settings.json (issue 14): one run each, wall s / CPU s / peak RSS MB",
             f"  {'keys':>8} {'MB':>5}   {'plan':>22}   {'bootstrap':>22}"]
    for row in section["rows"]:
        cells = [f"{row[c]['wall_s']:6.2f} / {row[c]['cpu_s']:5.2f} / {row[c]['maxrss_mb']:5.0f}" for c in ("plan", "bootstrap")]
        lines.append(f"  {row['keys']:>8} {row['bytes'] / 1e6:>5.1f}   {cells[0]:>22}   {cells[1]:>22}")
    if section.get("cpu_us_per_key_above_smallest"):
        shown = ", ".join(f"{x:g}" for x in section["cpu_us_per_key_above_smallest"])
        lines.append(f"  bootstrap CPU per key above the smallest size (µs, flat = linear): {shown}")
    return lines


if __name__ == "__main__":
    import json

    sizes = tuple(int(s) for s in sys.argv[1:]) or SIZES
    result = run_big_settings_suite(sys.executable, Path("/tmp/wa-bench"), sizes)
    print("\n".join(big_settings_table(result)))
    print(json.dumps(result["targets"], indent=1, ensure_ascii=False))
