"""The results table: one row per run, with the comparisons the paper makes.

Columns (``results.csv``; ``results.md`` shows the same numbers):

``final`` / ``best``   primary metric (NER: strict entity F1; classification: macro F1), 0..1
``gap_points``         ``final - centralized final`` of the same task, in points (x 100)
``mb``                 megabytes exchanged over the whole run, up + down (1 MB = 10^6 bytes)
``reduction``          ``1 - bytes / bytes of full FedAvg`` (measured; same task, partition, rounds
                       and clients), blank for runs that exchange nothing
``analytic_reduction`` the run's own analytic figure (``fedskip comm``), when it reported one
``rounds_to_95``       first round/epoch reaching 95% of the run's best metric
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedskip.bench.records import MB, RunRecord

REACH_FRACTION = 0.95


@dataclass
class ResultRow:
    name: str
    groups: str
    task: str
    method: str
    metric: str
    status: str
    layers: int | None = None
    strategy: str = ""
    partition: str = ""
    target_epsilon: float | None = None
    final: float | None = None
    best: float | None = None
    gap_points: float | None = None
    mb: float | None = None
    reduction: float | None = None
    analytic_reduction: float | None = None
    rounds: int = 0
    rounds_to_95: int | None = None
    seconds: float | None = None
    epsilon: float | None = None
    privacy_unit: str = ""  # what ε is per: patient, note, example (dp=sample) or client
    extra: dict[str, Any] = field(default_factory=dict)


CSV_COLUMNS = [f for f in ResultRow.__dataclass_fields__ if f != "extra"]


def trained_layers(record: RunRecord) -> int | None:
    """Blocks trained and exchanged per round: the first round's selection when the run logged
    one, else the summary's, else the ``layers`` setting."""
    for row in record.rows:
        if row.selected_layers:
            return len(row.selected_layers)
    selected = record.summary.get("selected_layers")
    if isinstance(selected, list) and selected and not isinstance(selected[0], list):
        return len(selected)
    blocks = record.summary.get("num_blocks")
    if record.method == "fedavg" and isinstance(blocks, int):
        return blocks
    layers = record.setting("layers")
    return int(layers) if isinstance(layers, int) else None


def reference(records: Sequence[RunRecord], record: RunRecord, method: str) -> RunRecord | None:
    """The ``method`` run of the same task to compare ``record`` with: same partition (and α)
    and no DP preferred, else any complete one of that task."""
    same_task = [r for r in records if r.method == method and r.task == record.task and r.complete]

    def score(r: RunRecord) -> tuple[int, int]:
        same_part = all(r.setting(k) == record.setting(k) for k in ("partition", "alpha"))
        no_dp = r.setting("dp", "none") == "none"
        return (int(same_part), int(no_dp))

    return max(same_task, key=score) if same_task else None


def build_rows(
    records: Sequence[RunRecord],
    groups: Mapping[str, Sequence[str]] | None = None,
    labels: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ResultRow]:
    """One :class:`ResultRow` per record, in the given order."""
    rows = []
    for record in records:
        label = dict((labels or {}).get(record.name, {}))
        row = ResultRow(
            name=record.name,
            groups=" ".join((groups or {}).get(record.name, [])),
            task=record.task,
            method=record.method,
            metric=record.metric_name,
            status="done" if record.complete else "incomplete",
            layers=trained_layers(record),
            strategy=str(record.setting("layer-strategy", "")),
            partition=str(label.get("partition") or _partition_label(record)),
            target_epsilon=_target_epsilon(record),
            final=record.final,
            best=record.best,
            mb=record.total_bytes / MB,
            analytic_reduction=record.reported_reduction,
            rounds=record.rounds,
            rounds_to_95=record.rounds_to_fraction(REACH_FRACTION),
            seconds=record.seconds,
            epsilon=record.epsilon,
            privacy_unit=str(record.summary.get("privacy_unit") or ""),
            extra=label,
        )
        central = reference(records, record, "centralized")
        if central is not None and central.final is not None and row.final is not None:
            row.gap_points = 100.0 * (row.final - central.final)
        fedavg = reference(records, record, "fedavg")
        if fedavg is not None and fedavg.total_bytes > 0 and record.total_bytes > 0:
            row.reduction = 1.0 - record.total_bytes / fedavg.total_bytes
        rows.append(row)
    return rows


def _partition_label(record: RunRecord) -> str:
    scheme = str(record.setting("partition", ""))
    if scheme == "dirichlet":
        return f"dir{float(record.setting('alpha', 0.0)):g}"
    return scheme


def _target_epsilon(record: RunRecord) -> float | None:
    if record.setting("dp", "none") == "none":
        return None
    value = record.setting("target-epsilon")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


# --------------------------------------------------------------------------- output
def write_csv(rows: Sequence[ResultRow], path: Path) -> Path:
    """``results.csv``: :data:`CSV_COLUMNS`, numbers unrounded, blanks for missing values."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            values = asdict(row)
            values.pop("extra")
            writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return path


def fmt(value: float | None, spec: str = ".3f", *, pct: bool = False, signed: bool = False) -> str:
    """A table cell: blank-dash for missing values, ``pct`` multiplies by 100 and adds %."""
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:{'+' if signed else ''}.1f}%"
    return f"{value:{'+' if signed else ''}{spec}}"


def fmt_mb(value: float | None) -> str:
    """Megabytes with precision that suits the size (0.004, 3.6, 1234)."""
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def markdown_table(rows: Sequence[ResultRow], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (metric 0..1 as 3 decimals, gap in points, MB, reduction)."""
    cells = {
        "run": lambda r: f"`{r.name}`",
        "method": lambda r: r.method,
        "task": lambda r: r.task,
        "k": lambda r: "" if r.layers is None else str(r.layers),
        "partition": lambda r: r.partition,
        "strategy": lambda r: r.strategy,
        "ε target": lambda r: "–" if r.target_epsilon is None else f"{r.target_epsilon:g}",
        "ε spent": lambda r: (
            fmt(r.epsilon, ".2f")
            + (f" per {r.privacy_unit}" if r.privacy_unit and r.epsilon is not None else "")
        ),
        "final": lambda r: fmt(r.final),
        "best": lambda r: fmt(r.best),
        "gap (pts)": lambda r: fmt(r.gap_points, ".1f", signed=True),
        "MB": lambda r: fmt_mb(r.mb),
        "reduction": lambda r: fmt(r.reduction, pct=True),
        "rounds to 95%": lambda r: "–" if r.rounds_to_95 is None else str(r.rounds_to_95),
        "s": lambda r: fmt(r.seconds, ".0f"),
    }
    columns = list(
        columns
        or ["run", "method", "final", "best", "gap (pts)", "MB", "reduction", "rounds to 95%", "s"]
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cells[c](row) for c in columns) + " |")
    return "\n".join(lines)
