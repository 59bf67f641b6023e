"""Read a run directory (``config.json``, ``metrics.jsonl``, ``summary.json``) into one
:class:`RunRecord` that reports, plots and claims work on.

Every method writes the same typed records (:mod:`fedskip.records.schema`): a centralized run logs
epochs with its test scores, a local-only run one epoch row per site model, a federated run
rounds with server-side and client-side evaluations and the bytes that crossed the wire.
:func:`load_run` reads them back through that schema:

* the curve is one :class:`Point` per epoch/round: the primary metric on the global test set
  (server-side evaluation when there is one, else the clients' federated evaluation), the
  cumulative bytes exchanged (up + down, training messages only) and the elapsed seconds; a
  local-only run's point is the mean over its site models;
* ``final`` is the metric after the last round, ``best`` the highest over the curve (with a
  validation split: ``test_at_best``, the test metric of the round chosen on validation);
* runs that exchange nothing (centralized, local-only) have zero bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedskip.errors import ConfigError
from fedskip.records.rundir import read_metrics
from fedskip.records.schema import MetricsRow, RunSummary, as_number

MB = 1_000_000
"""Bytes per megabyte (SI) in every table and plot."""


def finished(summary: Mapping[str, Any]) -> bool:
    """Whether a run's ``summary.json`` content measures its config: every round aggregated (a
    run with failed rounds is listed as not finished, and trained again on resume)."""
    return not summary.get("failed_rounds")


@dataclass(frozen=True)
class Point:
    """One epoch or round: ``step`` (1-based), the primary metric (None if not evaluated),
    cumulative bytes exchanged so far (up + down) and seconds since the run started."""

    step: int
    metric: float | None
    cumulative_bytes: int
    seconds: float | None = None


@dataclass
class RunRecord:
    """A finished (or interrupted) run, normalized for comparison."""

    path: Path
    config: dict[str, Any]
    summary: RunSummary
    rows: list[MetricsRow]
    metric_name: str
    points: list[Point] = field(default_factory=list)
    shown_as: str = ""
    """The run this record stands in for in tables (set when it won a choice on validation:
    :func:`fedskip.bench.choice.choose_on_validation`); "" = itself."""
    candidate: str = ""
    """The label of the candidate setting it was trained with, when it won such a choice."""

    @property
    def name(self) -> str:
        """The run-directory name, or the run it stands in for (:attr:`shown_as`)."""
        return self.shown_as or self.path.name

    @property
    def method(self) -> str:
        return str(self.summary.get("method") or self.config.get("method", "?"))

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or self.config.get("task", "?"))

    @property
    def failed_rounds(self) -> list[int]:
        """Rounds the server could not aggregate (too few valid replies), from ``summary.json``."""
        return self.summary.failed_rounds

    @property
    def complete(self) -> bool:
        """True once the run wrote ``summary.json`` and it is :func:`finished`."""
        return bool(self.summary) and finished(self.summary)

    @property
    def per_client(self) -> bool:
        """True for a local-only run (metrics rows per client and epoch)."""
        return bool(self.rows) and all(row.kind == "site-epoch" for row in self.rows)

    @property
    def curve(self) -> list[Point]:
        """The points that carry a metric."""
        return [p for p in self.points if p.metric is not None]

    @property
    def final(self) -> float | None:
        """Primary metric at the end of training: the last round's / epoch's (the summary's
        ``final`` scores, which every record has; a local-only run's mean over its site models),
        else the last point. Not the validation-chosen model's: that is ``test_at_best``, which
        a summary's ``final_metric`` holds since every method writes it, so records of both
        generations read alike here."""
        last = self.summary.get("final")
        if isinstance(last, Mapping):
            value = as_number(last.get(self.summary.primary_metric))
            if value is not None:
                return value
        value = self.summary.number("mean_metric") if self.per_client else None
        if value is None and not isinstance(last, Mapping):
            value = self.summary.final_metric
        if value is None and self.curve:
            value = self.curve[-1].metric
        return value

    @property
    def best(self) -> float | None:
        """Highest primary metric of the run (over the curve and the summary's best/final);
        with a validation split the test metric of the validation-chosen round, never a best
        picked on the test set."""
        chosen = self.summary.number("test_at_best")
        if chosen is not None:
            return chosen
        values = [p.metric for p in self.curve if p.metric is not None]
        if self.per_client:  # its best_metric is the best single client, not the best epoch
            return max(values) if values else self.final
        for found in (self.summary.number("best_metric"), self.summary.final_metric):
            if found is not None:
                values.append(found)
        return max(values) if values else None

    @property
    def total_bytes(self) -> int:
        """Bytes exchanged over the whole run, up + down (training messages)."""
        reported = self.summary.total_bytes
        if reported is not None:
            return reported
        return self.points[-1].cumulative_bytes if self.points else 0

    @property
    def rounds(self) -> int:
        """Epochs or rounds that were logged."""
        return len(self.points)

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds of the run."""
        value = self.summary.number("seconds")
        if value is None and self.points:
            value = self.points[-1].seconds
        return value

    @property
    def epsilon(self) -> float | None:
        """ε spent (at the run's δ) when trained with differential privacy: the summary's, else
        the last one a round reported."""
        value = self.summary.number("epsilon")
        if value is None:
            known = [r.epsilon for r in self.rows if r.epsilon is not None]
            value = float(known[-1]) if known else None
        return value

    @property
    def reported_reduction(self) -> float | None:
        """Reduction versus full FedAvg as the run itself reported it (analytic), if any."""
        return self.summary.number("reduction")

    def setting(self, key: str, default: Any = None) -> Any:
        """A config value (kebab-case key)."""
        return self.config.get(key, default)

    def rounds_to_fraction(self, fraction: float = 0.95) -> int | None:
        """First epoch/round whose metric reaches ``fraction`` of the run's best."""
        best = self.best
        if best is None:
            return None
        for point in self.curve:
            if point.metric is not None and point.metric >= fraction * best:
                return point.step
        return None


# --------------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory; raises :class:`ConfigError` naming the path if it is none."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: run directory not found")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: not a run directory (no config.json)")
    config = _read_json(folder / "config.json")
    summary_path = folder / "summary.json"
    summary = RunSummary(_read_json(summary_path) if summary_path.is_file() else {})
    rows = read_metrics(folder / "metrics.jsonl")
    metric = metric_name_for(config, summary)
    return RunRecord(folder, config, summary, rows, metric, points_of(rows, metric))


def load_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    return [load_run(p) for p in paths]


def metric_name_for(config: Mapping[str, Any], summary: RunSummary) -> str:
    """The headline metric: what the run reported, else ``f1`` (NER) / ``macro_f1``."""
    if summary.primary_metric:
        return summary.primary_metric
    task = summary.get("task") or config.get("task")
    return "f1" if task == "ner" else "macro_f1"


def points_of(rows: Sequence[MetricsRow], metric: str) -> list[Point]:
    """One :class:`Point` per metrics row; rows of a local-only run (one per site model and
    epoch) become one point per epoch: the mean over the site models."""
    if rows and all(row.kind == "site-epoch" for row in rows):
        return _mean_over_clients(rows, metric)
    return [Point(row.step, row.metric(metric), row.cum_bytes, row.elapsed_s) for row in rows]


def _mean_over_clients(rows: Sequence[MetricsRow], metric: str) -> list[Point]:
    by_step: dict[int, list[float]] = {}
    for row in rows:
        value = row.metric(metric)
        by_step.setdefault(row.step, [])
        if value is not None:
            by_step[row.step].append(value)
    return [
        Point(step, sum(values) / len(values) if values else None, 0)
        for step, values in sorted(by_step.items())
    ]
