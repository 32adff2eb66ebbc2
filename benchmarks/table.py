"""The results as a plain-text table (what `python -m benchmarks` prints)."""

from __future__ import annotations

from typing import Any


def _range(stat: dict[str, Any], digits: int = 0) -> str:
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def agent_table(agent: dict[str, Any]) -> list[str]:
    lines = [
        f"Agent: {agent['runs']} interleaved runs of each command; × = median / median of python3 -c pass",
        f"  {agent['python']}; realistic home: {agent['home']['settings_json_lines']}-line settings.json, "
        f"{agent['home']['extensions']} extensions; load {agent['load_avg_before'][0]} → {agent['load_avg_after'][0]}",
        f"  {'command':<46} {'wall ms median (min–max)':>24} {'×':>6} {'CPU ms median (min–max)':>23} {'×':>6} {'peak RSS MB':>11}",
    ]
    for name, row in agent["commands"].items():
        lines.append(
            f"  {name:<46} {_range(row['wall_ms']):>24} {row['wall_ratio']:>6.2f} "
            f"{_range(row['cpu_ms']):>23} {row['cpu_ratio']:>6.2f} {row['peak_rss_mb']['max']:>11.1f}"
        )
    return lines


def targets(section: dict[str, Any]) -> list[str]:
    return [f"  [{'met ' if ok else 'MISS'}] {what}" for what, ok in section.get("targets", {}).items()]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"workspace-agent benchmarks, {meta['started_at']} · {meta['cpus']} CPUs · commit {meta['commit']} · "
        f"load average at start {meta['load_avg_start']}, at end {meta.get('load_avg_end')}",
    ]
    if meta.get("noisy"):
        lines.append(f"  NOTE: {meta['noisy']}")
    for section, render_section in (("agent", agent_table),):
        if section in results:
            lines += ["", *render_section(results[section]), "  Targets:", *targets(results[section])]
    return "\n".join(lines) + "\n"
