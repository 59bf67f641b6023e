"""Experiment tracking: every ``metrics.jsonl`` row also goes to TensorBoard and/or MLflow, and
the run's outputs at its end.

``tracking = tensorboard`` writes event files to ``OUT/tensorboard/`` (``tensorboard --logdir
runs/`` shows every run below ``runs/``); ``tracking = mlflow`` logs one MLflow run per run
directory to ``mlflow-uri`` — by default the SQLite store ``OUT/mlflow.db`` (``mlflow ui
--backend-store-uri sqlite:///OUT/mlflow.db``; the UI comes with the ``mlflow`` extra, not with
the ``test`` extra's mlflow-skinny); ``tracking = tensorboard,mlflow`` does both.

A row becomes scalars at one step (the ``round``, else the ``epoch``), grouped by what they
measure (:func:`round_scalars`): ``train/`` (``loss``, ``seconds`` of the round, ``elapsed_s``,
``client_seconds/<client>`` (each client's own training seconds that round), replies, ``selected_blocks/<b>`` = 1 for each block trained that round, 0 for one trained in an
earlier round of this process), ``eval/`` (the global-test scores ``eval/f1``,
``eval/per_type/problem/f1``; the clients' federated evaluation ``eval/clients/…``, per site
``eval/sites/<site>/…``, validation ``eval/val/…``, personalized models ``eval/personal/…``),
``comm/`` (bytes as MB = 10⁶ bytes: ``down_MB``, ``up_MB``, ``eval_MB``, ``cum_MB``, ...) and
``privacy/`` (``epsilon`` at δ, ``dp_step/…``). A row of one client's own model (``method =
local``) puts ``client_<i>/`` after the group (``eval/client_1/f1``).

At the end of a training command :func:`log_outputs` adds the run's final figures
(``eval/final_<metric>``, ``eval/best_<metric>``, ``comm/total_MB``, ``privacy/epsilon``), in
TensorBoard as the HParams of the config, in MLflow as metrics beside the config's parameters,
with ``report.md``, ``summary.json``, ``config.json``, ``plots/`` and the exported ``model/`` as
MLflow artifacts (the model with MLflow's transformers flavour when the full ``mlflow`` package is
installed, else its files). Flower-free; both backends are optional extras, imported only when
chosen.
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

from fedskip.config import Config, read_run_config
from fedskip.errors import ConfigError
from fedskip.records.schema import RunSummary, read_metrics

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
MLFLOW_EXPERIMENT = "fedskip"
OUT_TAG = "fedskip.out"

STEP_KEYS = ("round", "epoch")
NOT_SCALARS = ("round", "epoch", "client", "clients", "selected_layers")

TRAIN_TAGS = {
    "train_loss": "loss",
    "seconds": "seconds",
    "elapsed_s": "elapsed_s",
    "replies_ok": "replies_ok",
    "replies_rejected": "replies_rejected",
}
"""Row key → tag under ``train/``."""
COMM_TAGS = {
    "bytes_down": "down_MB",
    "bytes_up": "up_MB",
    "bytes_eval": "eval_MB",
    "cum_bytes_down": "cum_down_MB",
    "cum_bytes_up": "cum_up_MB",
    "cum_bytes": "cum_MB",
}
"""Row key (bytes) → tag under ``comm/`` (MB)."""
EVAL_SECTIONS = {
    "test": "",
    "client_eval": "clients/",
    "site_eval": "sites/",
    "val": "val/",
    "personal_eval": "personal/",
}
"""Row section → its path under ``eval/`` (a centralized row's ``test`` scores are ``eval/``)."""
PRIVACY_KEYS = ("epsilon", "dp_step")
CLIENT_SECONDS = "train_seconds"
"""Row section: each client's own training seconds, by client id (``train/client_seconds/…``)."""
MB = 1e6

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
    client = f"client_{row['client']}/" if "client" in row else ""
    values: dict[str, float] = {}
    for key, value in _flatten({k: v for k, v in row.items() if k not in NOT_SCALARS}):
        group, tag, value = _grouped(key, value)
        values[f"{group}/{client}{tag}"] = value
    return step, values


def _grouped(key: str, value: float) -> tuple[str, str, float]:
    """(group, tag within it, value) of a flattened row key (bytes become MB)."""
    head, _, rest = key.partition("/")
    if key in TRAIN_TAGS:
        return "train", TRAIN_TAGS[key], value
    if key in COMM_TAGS:
        return "comm", COMM_TAGS[key], value / MB
    if head == CLIENT_SECONDS and rest:
        return "train", f"client_seconds/{rest}", value
    if head in PRIVACY_KEYS:
        return "privacy", key, value
    if rest and head in EVAL_SECTIONS:
        return "eval", EVAL_SECTIONS[head] + rest, value
    return "eval", key, value  # a global-test score (f1, per_type/problem/f1, accuracy, ...)


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
        seen = sorted(self._blocks_seen)
        return {f"train/selected_blocks/{b}": float(b in selected) for b in seen}

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


# --------------------------------------------------------------------------- the run's end
ARTIFACTS = ("report.md", "report.csv", "summary.json", "config.json")
"""Files of the run directory logged as MLflow artifacts (with ``plots/`` and ``model/``)."""
PIPELINE_TASKS = {"ner": "token-classification", "classification": "text-classification"}
"""fedskip task → the transformers pipeline task of MLflow's transformers flavour."""


def final_scalars(summary: RunSummary) -> dict[str, float]:
    """The run's final figures, grouped like the rows' tags: ``eval/final_<metric>`` and
    ``eval/best_<metric>`` (primary metric on the global test set), ``comm/total_MB`` (training
    traffic, up + down, MB = 10⁶ bytes) and ``privacy/epsilon`` (ε at δ; absent without DP or
    when infinite)."""
    name = summary.primary_metric or "metric"
    figures = {
        f"eval/final_{name}": summary.final_metric,
        f"eval/best_{name}": summary.number("best_metric"),
        "comm/total_MB": None if summary.total_bytes is None else summary.total_bytes / MB,
        "privacy/epsilon": summary.number("epsilon"),
    }
    return {k: v for k, v in figures.items() if v is not None and math.isfinite(v)}


def log_outputs(out: str | Path) -> None:
    """At the end of a training command: the final figures of the run directory ``out`` (its
    ``summary.json``) with its config to TensorBoard (HParams) and to its MLflow run, and its
    report, records, plots and exported model as that MLflow run's artifacts — per config key
    ``tracking`` of ``out/config.json`` (nothing when it is ``none``)."""
    folder = Path(out)
    cfg = read_run_config(folder / "config.json")
    if not cfg.tracking_list():
        return
    summary_path = folder / "summary.json"
    summary = RunSummary(
        json.loads(summary_path.read_text("utf-8")) if summary_path.is_file() else {}
    )
    rows = read_metrics(folder / "metrics.jsonl")
    step = rows[-1].step if rows else 0
    finals = final_scalars(summary)
    if "tensorboard" in cfg.tracking_list():
        _tensorboard_hparams(folder / TENSORBOARD_DIR, cfg, finals, step)
    if "mlflow" in cfg.tracking_list():
        _mlflow_outputs(folder, cfg, finals, step)


def _tensorboard_hparams(folder: Path, cfg: Config, finals: Mapping[str, float], step: int) -> None:
    """The config as HParams with the final figures as its metrics (TensorBoard's HParams tab),
    in the run's own event folder."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    writer = SummaryWriter(log_dir=str(folder))
    events = writer.file_writer
    assert events is not None  # made by SummaryWriter.__init__
    try:
        for summary in hparams(cfg.to_run_config(), dict(finals)):
            events.add_summary(summary)
        for tag, value in finals.items():
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def _mlflow_outputs(folder: Path, cfg: Config, finals: Mapping[str, float], step: int) -> None:
    """Final figures and artifacts to the MLflow run of ``folder`` (the latest one tagged with
    it; nothing when there is none)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri(cfg, folder)
    with _quiet_logger("mlflow"), _quiet_logger("alembic"):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        if experiment is None:
            return
        found = client.search_runs(
            [experiment.experiment_id],
            f"tags.`{OUT_TAG}` = '{folder.resolve()}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if not found:
            return
        run_id, status = found[0].info.run_id, found[0].info.status
        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value in finals.items()]
        client.log_batch(run_id, metrics=metrics)
        for name in ARTIFACTS:
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        if (folder / "plots").is_dir():
            client.log_artifacts(run_id, str(folder / "plots"), "plots")
        if (folder / "model" / "config.json").is_file():
            _log_model(client, uri, run_id, folder / "model", cfg.task)
            client.set_terminated(run_id, status=status)  # as the run ended (a flavour reopens it)


def full_mlflow() -> bool:
    """Whether the full ``mlflow`` package (the ``mlflow`` extra: the UI, the model flavours'
    dependencies) is installed, not only the ``test`` extra's mlflow-skinny."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("mlflow")
    except PackageNotFoundError:
        return False
    return True


def _log_model(client: Any, uri: str, run_id: str, model: Path, task: str) -> None:
    """The exported model as the MLflow run's ``model``: with MLflow's transformers flavour
    (full ``mlflow``), else its files as artifacts (mlflow-skinny; or when the flavour fails,
    with a warning: the run's records are logged either way)."""
    if full_mlflow():
        import mlflow
        import mlflow.transformers

        before = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            with mlflow.start_run(run_id=run_id):
                mlflow.transformers.log_model(
                    str(model), name="model", task=PIPELINE_TASKS.get(task)
                )
            return
        except Exception as exc:  # noqa: BLE001 — never lose the artifacts over the flavour
            logging.getLogger(__name__).warning(
                "MLflow transformers flavour failed (%s); logging %s as files", exc, model
            )
        finally:
            mlflow.set_tracking_uri(before)
    client.log_artifacts(run_id, str(model), "model")


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
