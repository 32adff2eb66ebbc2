"""The results as a plain-text table (what `python -m benchmarks` prints)."""

from __future__ import annotations

from typing import Any

from benchmarks.big_settings import big_settings_table
from benchmarks.spend import spend_table


def _range(stat: dict[str, Any], digits: int = 0) -> str:
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def agent_table(agent: dict[str, Any]) -> list[str]:
    lines = [
        f"Agent: {agent['runs']} interleaved runs of each command; × = median / median of the agent's python -c pass",
        (f"  {agent['python']}; realistic home: {agent['home']['settings_json_lines']}-line settings.json, "
        f"{agent['home']['extensions']} extensions; load {agent['load_avg_before'][0]} → {agent['load_avg_after'][0]}"),
        f"  {'command':<46} {'wall ms median (min–max)':>24} {'×':>6} {'CPU ms median (min–max)':>23} {'×':>6} {'peak RSS MB':>11}",
    ]
    for name, row in agent["commands"].items():
        lines.append(
            f"  {name:<46} {_range(row['wall_ms']):>24} {row['wall_ratio']:>6.2f} "
            f"{_range(row['cpu_ms']):>23} {row['cpu_ratio']:>6.2f} {row['peak_rss_mb']['max']:>11.1f}"
        )
    return lines


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def server_table(server: dict[str, Any]) -> list[str]:
    lines = [
        (f"Server: ingest of {server['report_rules']}-rule reports from {server['workspaces']} enrolled workspaces; "
        f"one uvicorn process ({server.get('uvicorn', '?')}); load {server['load_avg_before'][0]} → "
        f"{server['load_avg_after'][0]}"),
        (f"  {'endpoint':<34} {'max throughput /s':>17} {'of hello':>8} {'p50/p99 ms at max':>18} "
        f"{'offered /s':>10} {'done /s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"),
    ]
    names = {"hello": "bare Starlette/uvicorn hello (ceiling)", "sqlite": "drift server, SQLite",
             "postgresql": "drift server, PostgreSQL"}
    for key, label in names.items():
        if key not in server:
            continue
        row = server[key]
        best = max(row["throughput_rounds"], key=lambda r: r["throughput_rps"])
        fixed = row.get("fixed_rate", {})
        frac = f"{row['fraction_of_hello']:.0%}" if "fraction_of_hello" in row else "100%"
        lines.append(
            f"  {label:<34} {row['throughput_rps']:>17.0f} {frac:>8} "
            f"{_ms(best.get('p50_ms')) + '/' + _ms(best.get('p99_ms')):>18} "
            f"{fixed.get('offered_rps', '—'):>10} {fixed.get('throughput_rps', '—'):>8} "
            f"{_ms(fixed.get('p50_ms')):>7} {_ms(fixed.get('p99_ms')):>7} "
            f"{row['errors'] + fixed.get('errors', 0):>6}"
        )
    if server.get("postgresql_skipped"):
        lines.append(f"  PostgreSQL skipped: {server['postgresql_skipped']}")
    return lines


def fleet_table(fleet: dict[str, Any]) -> list[str]:
    enroll = fleet.get("enroll", {})
    lines = [
        (f"Fleet ({fleet.get('db', 'sqlite')}): {fleet['workspaces']:,} simulated workspaces, heartbeat "
        f"{fleet['heartbeat_s']:g} s ±{fleet['jitter']:.0%}, {fleet['drift_rate']:.0%} of reports change state, "
        f"{fleet['duration_s']:g} s; load {fleet['load_avg_before'][0]} → {fleet['load_avg_after'][0]}"),
        (f"  enrolled {enroll.get('ok', 0):,} in {enroll.get('seconds', '?')} s ({enroll.get('throughput_rps', '?')}/s, "
        f"{enroll.get('errors', 0)} errors)"),
        (f"  offered {fleet['offered_rps']}/s, answered {fleet['achieved_rps']}/s; {fleet['ok']:,} ok, "
        f"{fleet['errors']} errors; latency from due time p50 {_ms(fleet['p50_ms'])} ms, p99 {_ms(fleet['p99_ms'])} ms, "
        f"max {_ms(fleet['max_ms'])} ms"),
        (f"  backlog max {fleet['backlog_max']}, at end {fleet['backlog_end']}, slope over the 2nd half "
        f"{fleet['backlog_slope_per_s']:+.2f} reports/s → {'HELD' if fleet['held'] else 'NOT HELD: ' + '; '.join(fleet['not_held_because'])}"),
    ]
    during = fleet.get("fleet_page_during_load", {})
    if during.get("n"):
        lines.append(f"  fleet page / while reports flow: p50 {_ms(during['p50_ms'])} ms, max {_ms(during['max_ms'])} ms "
                     f"({during['n']} loads)")
    for name, row in fleet.get("fleet_page_after", {}).items():
        lines.append(f"  {name:<18} with {fleet['workspaces']:,} workspaces: p50 {_ms(row['p50_ms'])} ms, "
                     f"p99 {_ms(row['p99_ms'])} ms, {row['bytes']:,} bytes ({row['ok']} loads, {row['errors']} errors)")
    return lines


def watch_table(result: dict[str, Any]) -> list[str]:
    lat, mem = result["latency_ms"], result["memory_mb"]
    return [
        (f"Watch: {result['restored']}/{result['flips']} flips of chat.disableAIFeatures restored "
         f"({result['settings_json_lines']}-line settings.json, half in place, half by rename); "
         f"load {result['load_avg_before'][0]}"),
        (f"  flip → restored ms: p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])}; "
         f"{result.get('corrections_delivered', '?')} corrections delivered to a loopback drift server"),
        f"  idle CPU over {result['idle_s']:g} s: {result['idle_cpu_ms']} ms ({result['idle_cpu_percent']}% of a core)",
        (f"  memory MB: VmRSS {mem.get('VmRSS')} (own pages, RssAnon {mem.get('RssAnon')}; shared libraries "
         f"{mem.get('RssFile')}); peak VmHWM {mem.get('VmHWM')}"),
    ]


def targets(section: dict[str, Any]) -> list[str]:
    return [f"  [{'met ' if ok else 'MISS'}] {what}" for what, ok in section.get("targets", {}).items()]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        (f"workspace-agent benchmarks, {meta['started_at']} · {meta['cpus']} CPUs · commit {meta['commit']} · "
        f"load average at start {meta['load_avg_start']}, at end {meta.get('load_avg_end')}"),
    ]
    if meta.get("skipped"):
        lines.append(f"  skipped: {meta['skipped']}")
    if meta.get("noisy"):
        lines.append(f"  NOTE: {meta['noisy']}")
    for section, render_section in (("agent", agent_table), ("settings", big_settings_table),
                                   ("server", server_table), ("fleet", fleet_table), ("watch", watch_table),
                                   ("spend", spend_table)):
        if section in results:
            lines += ["", *render_section(results[section]), "  Targets:", *targets(results[section])]
    return "\n".join(lines) + "\n"
