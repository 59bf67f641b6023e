"""Experiment tracking: every ``metrics.jsonl`` row also goes to TensorBoard and/or MLflow.

``tracking = tensorboard`` writes event files to ``OUT/tensorboard/`` (``tensorboard --logdir
runs/`` shows every run below ``runs/``); ``tracking = mlflow`` logs one MLflow run per run
directory to ``mlflow-uri`` — by default the SQLite store ``OUT/mlflow.db`` (``mlflow ui
--backend-store-uri sqlite:///OUT/mlflow.db``); ``tracking = tensorboard,mlflow`` does both.

A row becomes scalars at one step (the ``round``, else the ``epoch``): every finite number in it,
nested dicts flattened with ``/`` (``client_eval/f1``, ``per_type/problem/f1``, ``test/f1``),
each under ``client_<i>/`` when the row belongs to one client (``method = local``), and
``selected_blocks/<b>`` = 1 for each block trained that round (0 for a block trained in an
earlier round of this process but not in this one). Flower-free; both backends are optional
extras, imported only when chosen.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedskip.config import Config
from fedskip.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
MLFLOW_EXPERIMENT = "fedskip"
OUT_TAG = "fedskip.out"

STEP_KEYS = ("round", "epoch")
NOT_SCALARS = ("round", "epoch", "client", "clients", "selected_layers")

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def require_backends(cfg: Config) -> None:
    """Raise a one-line :class:`ConfigError` when a chosen backend's package is missing."""
    import importlib.util

    for name in cfg.tracking_list():
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise ConfigError(
                f"config key 'tracking': {name} is not installed; pip install \"fedskip[{name}]\""
            )


def round_scalars(row: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    """(step, {tag: value}) of a metrics row; see the module docstring for the tags."""
    step = next((int(row[k]) for k in STEP_KEYS if isinstance(row.get(k), int)), 0)
    prefix = f"client_{row['client']}/" if "client" in row else ""
    values: dict[str, float] = {}
    for key, value in _flatten({k: v for k, v in row.items() if k not in NOT_SCALARS}):
        values[prefix + key] = value
    return step, values


def _flatten(row: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in row.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}/")
        elif _is_number(value) and math.isfinite(value):
            yield f"{prefix}{key}", float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Tracker(ABC):
    """One tracking backend for one run: fed each metrics row, closed at the end."""

    def __init__(self) -> None:
        self._blocks_seen: set[int] = set()

    def log_round(self, row: Mapping[str, Any]) -> None:
        """Log the scalars of one ``metrics.jsonl`` row (see :func:`round_scalars`)."""
        step, values = round_scalars(row)
        values.update(self._block_scalars(row.get("selected_layers")))
        self.write(step, values)

    def _block_scalars(self, selected: Sequence[int] | None) -> dict[str, float]:
        if selected is None:
            return {}
        self._blocks_seen.update(selected)
        return {f"selected_blocks/{b}": float(b in selected) for b in sorted(self._blocks_seen)}

    @abstractmethod
    def write(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` at ``step`` (and flush: a crash keeps what was logged)."""

    @abstractmethod
    def close(self, *, ok: bool = True) -> None:
        """End the run (``ok=False``: it failed)."""


class TensorBoardTracker(Tracker):
    """Event files in ``folder`` (``OUT/tensorboard``); the config as text at step 0."""

    def __init__(self, folder: Path, cfg: Config) -> None:
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", _config_text(cfg), 0)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self, *, ok: bool = True) -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    """One MLflow run named after the run directory, with the config as parameters. A resumed
    run continues the MLflow run tagged with the same run directory."""

    def __init__(self, out: Path, cfg: Config) -> None:
        super().__init__()
        from mlflow.tracking import MlflowClient  # (its import sets the mlflow logger's level)

        with _quiet_logger("mlflow"), _quiet_logger("alembic"):  # "Creating tables..." lines
            uri = mlflow_uri(cfg, out)
            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                experiment_id = self.client.create_experiment(
                    MLFLOW_EXPERIMENT, _artifacts_next_to(uri)
                )
            self.run_id = self._start(experiment_id, out.resolve(), cfg)

    def _start(self, experiment_id: str, out: Path, cfg: Config) -> str:
        if cfg.resume:
            found = self.client.search_runs(
                [experiment_id], f"tags.`{OUT_TAG}` = '{out}'", max_results=1
            )
            if found:
                run_id: str = found[0].info.run_id
                self.client.update_run(run_id, status="RUNNING")
                return run_id
        tags = {OUT_TAG: str(out), "fedskip.method": cfg.method}
        run = self.client.create_run(experiment_id, run_name=out.name, tags=tags)
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in cfg.to_run_config().items()]
        self.client.log_batch(run.info.run_id, params=params)
        return str(run.info.run_id)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, *, ok: bool = True) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


class Trackers(Tracker):
    """Every chosen backend at once (none: a no-op)."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        super().__init__()
        self.trackers = list(trackers)

    def log_round(self, row: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_round(row)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        for tracker in self.trackers:
            tracker.write(step, values)

    def close(self, *, ok: bool = True) -> None:
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(ok=ok)


def mlflow_uri(cfg: Config, out: str | Path) -> str:
    """The MLflow tracking URI of a run: config key ``mlflow-uri``, else the SQLite store
    ``OUT/mlflow.db`` (absolute path)."""
    return cfg.mlflow_uri or f"sqlite:///{(Path(out) / MLFLOW_DB).resolve()}"


def open_trackers(cfg: Config, out: str | Path) -> Trackers:
    """The trackers ``cfg.tracking`` asks for, for the run directory ``out``."""
    require_backends(cfg)
    folder = Path(out)
    chosen: list[Tracker] = []
    for name in cfg.tracking_list():
        if name == "tensorboard":
            chosen.append(TensorBoardTracker(folder / TENSORBOARD_DIR, cfg))
        elif name == "mlflow":
            chosen.append(MlflowTracker(folder, cfg))
    return Trackers(chosen)


def _artifacts_next_to(uri: str) -> str | None:
    """A SQLite store keeps its (unused) artifact root beside it, not in the working folder."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None  # a server or other store has its own
    return str(Path(uri[len(prefix) :]).parent / MLFLOW_ARTIFACTS)


def _config_text(cfg: Config) -> str:
    """The config as a Markdown code block (TensorBoard renders text as Markdown)."""
    return "```\n" + json.dumps(cfg.to_run_config(), indent=2) + "\n```"


class _quiet_logger:
    """Raise a library logger to WARNING for a block (its INFO lines are not fedskip's)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
