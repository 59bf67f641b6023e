"""Read a run directory (``config.json``, ``metrics.jsonl``, ``summary.json``) into one
normalized :class:`RunRecord` that reports, plots and claims work on.

Every training command writes the same three files, but a centralized run logs epochs with its
scores under ``test`` while a federated run logs rounds with server-side and client-side
evaluations and the bytes that crossed the wire. :func:`load_run` hides those differences:

* the curve is one :class:`Point` per epoch/round: the primary metric on the global test set
  (server-side evaluation when there is one, else the clients' federated evaluation), the
  cumulative bytes exchanged (up + down, training messages only) and the elapsed seconds;
* ``final`` is the metric after the last round, ``best`` the highest over the curve;
* runs that exchange nothing (centralized, local-only) have zero bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedskip.errors import ConfigError

MB = 1_000_000
"""Bytes per megabyte (SI) in every table and plot."""

EVAL_SECTIONS = ("server_eval", "test", "eval", "global", "evaluate")
"""Where a metrics row may nest its global-test scores, in order of preference; the metric at
the top level of the row comes next and the clients' federated evaluation (``client_eval``)
last."""
CLIENT_SECTION = "client_eval"

STEP_KEYS = ("round", "epoch", "server_round", "step")
UP_KEYS = ("bytes_up",)
DOWN_KEYS = ("bytes_down",)
CUMULATIVE_KEYS = ("cumulative_bytes", "bytes_cumulative", "cum_bytes", "total_bytes_so_far")
FINAL_KEYS = ("final_metric", "final", "mean_metric")
"""``mean_metric``: a local-only run's final score, the mean over its clients' models."""
BEST_KEYS = ("best_metric", "best")
SECONDS_KEYS = ("elapsed_s", "elapsed", "wall_s", "seconds_total", "seconds")


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
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    metric_name: str
    points: list[Point] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def method(self) -> str:
        return str(self.summary.get("method") or self.config.get("method", "?"))

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or self.config.get("task", "?"))

    @property
    def failed_rounds(self) -> list[int]:
        """Rounds the server could not aggregate (too few valid replies), from ``summary.json``."""
        return [int(r) for r in self.summary.get("failed_rounds") or []]

    @property
    def complete(self) -> bool:
        """True once the run wrote ``summary.json`` and it is :func:`finished`."""
        return bool(self.summary) and finished(self.summary)

    @property
    def per_client(self) -> bool:
        """True for a local-only run (metrics rows per client and epoch)."""
        return bool(self.rows) and all("client" in row for row in self.rows)

    @property
    def curve(self) -> list[Point]:
        """The points that carry a metric."""
        return [p for p in self.points if p.metric is not None]

    @property
    def final(self) -> float | None:
        """Primary metric at the end of training (summary first, else the last point)."""
        value = summary_metric(self.summary, self.metric_name, FINAL_KEYS)
        if value is None and self.curve:
            value = self.curve[-1].metric
        return value

    @property
    def best(self) -> float | None:
        """Highest primary metric of the run (over the curve and the summary's best/final)."""
        values = [p.metric for p in self.curve if p.metric is not None]
        if self.per_client:  # its best_metric is the best single client, not the best epoch
            return max(values) if values else self.final
        for keys in (BEST_KEYS, FINAL_KEYS):
            found = summary_metric(self.summary, self.metric_name, keys)
            if found is not None:
                values.append(found)
        return max(values) if values else None

    @property
    def total_bytes(self) -> int:
        """Bytes exchanged over the whole run, up + down (training messages)."""
        for key in ("total_bytes", "bytes_total"):
            value = _as_number(self.summary.get(key))
            if value is not None:
                return int(value)
        traffic = self.summary.get("traffic") or self.summary.get("bytes")
        if isinstance(traffic, Mapping):
            up, down = _first(traffic, ("up", "bytes_up")), _first(traffic, ("down", "bytes_down"))
            if up is not None or down is not None:
                return int((up or 0) + (down or 0))
        return self.points[-1].cumulative_bytes if self.points else 0

    @property
    def rounds(self) -> int:
        """Epochs or rounds that were logged."""
        return len(self.points)

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds of the run."""
        for key in ("seconds", "wall_s", "wall_time_s", "elapsed_s"):
            value = _as_number(self.summary.get(key))
            if value is not None:
                return float(value)
        return self.points[-1].seconds if self.points else None

    @property
    def epsilon(self) -> float | None:
        """ε spent (at the run's δ) when trained with differential privacy."""
        value = _first(self.summary, ("epsilon",))
        privacy = self.summary.get("privacy")
        if value is None and isinstance(privacy, Mapping):
            value = _first(privacy, ("epsilon",))
        if value is None:
            eps = [_first(r, ("epsilon",)) for r in self.rows]
            known = [e for e in eps if e is not None]
            value = known[-1] if known else None
        return value

    @property
    def reported_reduction(self) -> float | None:
        """Reduction versus full FedAvg as the run itself reported it (analytic), if any."""
        value = _first(self.summary, ("reduction",))
        traffic = self.summary.get("traffic")
        if value is None and isinstance(traffic, Mapping):
            value = _first(traffic, ("reduction",))
        return value

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


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl`` (a torn last line of a killed run is skipped)."""
    if not path.is_file():
        return []
    lines = path.read_text("utf-8").splitlines()
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # the run was killed while writing its last line
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory; raises :class:`ConfigError` naming the path if it is none."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: run directory not found")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: not a run directory (no config.json)")
    config = _read_json(folder / "config.json")
    summary_path = folder / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    rows = read_rows(folder / "metrics.jsonl")
    metric = metric_name_for(config, summary)
    return RunRecord(folder, config, summary, rows, metric, points_of(rows, metric))


def load_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    return [load_run(p) for p in paths]


def metric_name_for(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The headline metric: what the run reported, else ``f1`` (NER) / ``macro_f1``."""
    name = summary.get("primary_metric") or summary.get("metric")
    if isinstance(name, str) and name:
        return name
    task = summary.get("task") or config.get("task")
    return "f1" if task == "ner" else "macro_f1"


def points_of(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Point]:
    """One :class:`Point` per metrics row, cumulating up + down bytes; rows of a local-only run
    (one per client and epoch) become one point per epoch: the mean over clients."""
    if rows and all("client" in row for row in rows):
        return _mean_over_clients(rows, metric)
    points: list[Point] = []
    total = 0
    for index, row in enumerate(rows, start=1):
        step = _first(row, STEP_KEYS)
        up, down = _first(row, UP_KEYS) or 0, _first(row, DOWN_KEYS) or 0
        total += int(up + down)
        cumulative = _first(row, CUMULATIVE_KEYS)
        points.append(
            Point(
                step=int(step) if step is not None else index,
                metric=row_metric(row, metric),
                cumulative_bytes=int(cumulative) if cumulative is not None else total,
                seconds=_first(row, SECONDS_KEYS),
            )
        )
    return points


def _mean_over_clients(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Point]:
    by_step: dict[int, list[float]] = {}
    for row in rows:
        step = int(_first(row, STEP_KEYS) or 0)
        value = row_metric(row, metric)
        by_step.setdefault(step, [])
        if value is not None:
            by_step[step].append(value)
    return [
        Point(step, sum(values) / len(values) if values else None, 0)
        for step, values in sorted(by_step.items())
    ]


def row_metric(row: Mapping[str, Any], metric: str) -> float | None:
    """``metric`` from a metrics row: nested evaluation sections first (global test set before
    the clients' federated evaluation), then a top-level key."""
    for section in EVAL_SECTIONS:
        scores = row.get(section)
        if isinstance(scores, Mapping):
            value = _as_number(scores.get(metric))
            if value is not None:
                return value
    for key in (metric, f"test_{metric}", f"eval_{metric}", f"server_{metric}"):
        value = _as_number(row.get(key))
        if value is not None:
            return value
    clients = row.get(CLIENT_SECTION)
    return _as_number(clients.get(metric)) if isinstance(clients, Mapping) else None


def summary_metric(summary: Mapping[str, Any], metric: str, keys: Sequence[str]) -> float | None:
    """``summary[key]`` as a number, or ``summary[key][metric]`` when it is a section."""
    for key in keys:
        value = summary.get(key)
        if isinstance(value, Mapping):
            found = row_metric(value, metric)
            if found is not None:
                return found
        elif _as_number(value) is not None:
            return _as_number(value)
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = _as_number(mapping.get(key))
        if value is not None:
            return value
    return None
