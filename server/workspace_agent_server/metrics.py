"""Prometheus text exposition, without a client library: a few counters and one histogram.

Counters live in this process (one uvicorn worker = one set); workspace counts by state are read
from the database at scrape time, so they are right whatever the number of workers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    ingested: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    webhook: Counter[str] = field(default_factory=Counter)  # delivered / failed / dropped / retried
    enroll_refused: Counter[str] = field(default_factory=Counter)  # identity refusals, by reason
    _latency_counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    _latency_sum: float = 0.0
    _latency_n: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe_ingest(self, seconds: float, duplicate: bool) -> None:
        with self._lock:
            if duplicate:
                self.duplicates += 1
            else:
                self.ingested += 1
            self._latency_sum += seconds
            self._latency_n += 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self._latency_counts[i] += 1

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def count_enroll_refused(self, reason: str) -> None:
        with self._lock:
            self.enroll_refused[reason] += 1

    def count_webhook(self, result: str, n: int = 1) -> None:
        with self._lock:
            self.webhook[result] += n

    def snapshot(self, writer: Mapping[str, int] | None = None) -> dict[str, float]:
        """This process's counters as {"name{labels}": value}: what its heartbeat stores in the
        database (replicas.py), so that any process can show every process's counters."""
        with self._lock:
            out: dict[str, float] = {
                "reports_ingested_total": self.ingested,
                "reports_duplicate_total": self.duplicates,
                "ingest_seconds_count": self._latency_n,
                "ingest_seconds_sum": round(self._latency_sum, 6),
            }
            out |= {f'reports_rejected_total{{reason="{r}"}}': n for r, n in self.rejected.items()}
            out |= {f'webhook_notices_total{{result="{r}"}}': n for r, n in self.webhook.items()}
            out |= {
                f'enroll_refused_total{{reason="{r}"}}': n for r, n in self.enroll_refused.items()
            }
        if writer is not None:
            out["ingest_batches_total"] = writer["batches"]
            out["ingest_batch_reports_total"] = writer["reports"]
        return out

    def render(
        self,
        workspaces: Mapping[str, int],
        webhook_queue: int | None,
        writer: Mapping[str, int] | None = None,
    ) -> str:
        """The /metrics body (text format 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP drift_reports_ingested_total Reports stored (not counting duplicates).",
                "# TYPE drift_reports_ingested_total counter",
                f"drift_reports_ingested_total {self.ingested}",
                "# HELP drift_reports_duplicate_total Reports whose id was already stored.",
                "# TYPE drift_reports_duplicate_total counter",
                f"drift_reports_duplicate_total {self.duplicates}",
                "# HELP drift_reports_rejected_total Reports refused, by reason.",
                "# TYPE drift_reports_rejected_total counter",
            ]
            lines += [
                f'drift_reports_rejected_total{{reason="{r}"}} {n}'
                for r, n in sorted(self.rejected.items())
            ]
            lines += [
                "# HELP drift_ingest_seconds Time to validate and store one report.",
                "# TYPE drift_ingest_seconds histogram",
            ]
            lines += [
                f'drift_ingest_seconds_bucket{{le="{b}"}} {n}'
                for b, n in zip(LATENCY_BUCKETS, self._latency_counts, strict=True)
            ]
            lines += [
                f'drift_ingest_seconds_bucket{{le="+Inf"}} {self._latency_n}',
                f"drift_ingest_seconds_sum {self._latency_sum:.6f}",
                f"drift_ingest_seconds_count {self._latency_n}",
                "# HELP drift_webhook_notices_total Webhook notices by result.",
                "# TYPE drift_webhook_notices_total counter",
            ]
            lines += [
                f'drift_webhook_notices_total{{result="{r}"}} {n}'
                for r, n in sorted(self.webhook.items())
            ]
            lines += [
                "# HELP drift_enroll_refused_total Enrollments refused for their identity, by reason.",
                "# TYPE drift_enroll_refused_total counter",
            ]
            lines += [
                f'drift_enroll_refused_total{{reason="{r}"}} {n}'
                for r, n in sorted(self.enroll_refused.items())
            ]
        lines += [
            "# HELP drift_workspaces Workspaces by status (stale overrides the last state).",
            "# TYPE drift_workspaces gauge",
        ]
        lines += [
            f'drift_workspaces{{state="{s}"}} {n}' for s, n in workspaces.items() if s != "total"
        ]
        if writer is not None:
            lines += [
                "# HELP drift_ingest_batches_total Transactions the report writer ran.",
                "# TYPE drift_ingest_batches_total counter",
                f"drift_ingest_batches_total {writer['batches']}",
                "# HELP drift_ingest_batch_reports_total Reports in them (÷ batches: mean batch).",
                "# TYPE drift_ingest_batch_reports_total counter",
                f"drift_ingest_batch_reports_total {writer['reports']}",
                "# HELP drift_ingest_queue Reports waiting for the writer (grows when it cannot keep up).",
                "# TYPE drift_ingest_queue gauge",
                f"drift_ingest_queue {writer['waiting']}",
            ]
        if webhook_queue is not None:
            lines += [
                "# HELP drift_webhook_queue Notices waiting to be sent.",
                "# TYPE drift_webhook_queue gauge",
                f"drift_webhook_queue {webhook_queue}",
            ]
        return "\n".join(lines) + "\n"


def render_replicas(replicas: Mapping[str, Mapping[str, float]], alive: Mapping[str, bool]) -> str:
    """Every process's counters (from the database; this process's are fresh), one series per
    replica as `drift_all_<name>{replica="…"}`: any one scrape, whichever process answers it, has
    all of them, so `sum without (replica)` is the total. Plus `drift_replica_up`."""
    families: dict[str, list[str]] = {}
    for replica in sorted(replicas):
        label = f'replica="{_escape(replica)}"'
        for key, value in sorted(replicas[replica].items()):
            name, _, rest = key.partition("{")
            labels = f"{label},{rest[:-1]}" if rest else label
            number = int(value) if float(value).is_integer() else value
            families.setdefault(name, []).append(f"drift_all_{name}{{{labels}}} {number}")
    lines = [
        "# HELP drift_replica_up 1 for a server process that sent a heartbeat lately, 0 for one "
        "gone (kept a day so that its counters still add up).",
        "# TYPE drift_replica_up gauge",
    ]
    lines += [
        f'drift_replica_up{{replica="{_escape(r)}"}} {int(alive.get(r, False))}'
        for r in sorted(replicas)
    ]
    for name in sorted(families):
        kind = "counter" if name.endswith("_total") else "untyped"
        lines += [f"# TYPE drift_all_{name} {kind}", *families[name]]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
