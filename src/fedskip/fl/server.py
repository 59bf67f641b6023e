"""The server side of a federated run, given a Flower ``Grid``: setup, rounds, records, export.

Per round (:class:`fedskip.fl.round_loop.RoundLoop`; under ``secagg=true`` the training
exchange is SecAgg+, :mod:`fedskip.fl.secagg_server`): the strategy trains and aggregates
(:mod:`fedskip.fl.strategy.core`, wrapped for DP by :mod:`fedskip.fl.strategy.privacy`), clients evaluate the
global model on their test splits, the server evaluates it on the held-out global test set; then
one row goes to ``metrics.jsonl`` and a checkpoint to ``checkpoint/``. At the end the global
model is exported to ``model/`` (loadable with plain transformers) and ``summary.json`` written
with the final and best metric, the bytes exchanged and the reduction versus full-model FedAvg.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid

from fedskip.config import Config, read_run_config, resume_conflict
from fedskip.errors import ConfigError
from fedskip.federation.planning import LayerPlanner
from fedskip.federation.round_rows import (
    headline,
    personal_eval,
    personal_summary,
    round_row,
    site_figures,
    summarize,
    truncate_metrics,
)
from fedskip.federation.round_types import RoundRecord
from fedskip.finish import Export, finish_summary
from fedskip.fl import messages
from fedskip.fl.progress import RoundReporter, human_bytes
from fedskip.fl.round_loop import Exchange, RoundLoop, plain_exchange
from fedskip.fl.strategy.builder import build_strategy
from fedskip.fl.strategy.core import LayerSkipStrategy
from fedskip.fl.strategy.privacy import privacy_summary, unnoised
from fedskip.fl.strategy.wrapper import StrategyWrapper
from fedskip.methods import ALL
from fedskip.pipeline import Prepared
from fedskip.records.checkpoint import (
    Checkpoint,
    capture_rng,
    load_checkpoint,
    remove_checkpoint,
    restore_rng,
    save_checkpoint,
    with_run_wire,
)
from fedskip.records.rundir import RunDir
from fedskip.records.schema import MetricsRow, RunSummary
from fedskip.train.plateau import ValidationChoice
from fedskip.trainability import ModelBundle, load_bundle

log = logging.getLogger(__name__)

_VALUE_BYTES = {"none": 4, "fp16": 2, "bf16": 2, "int8": 1}
"""Bytes per value on the wire by ``wire_compression`` (int8 adds a scale per tensor)."""


def _wire_note(scheme: str) -> str:
    return "" if scheme == "none" else f", {scheme} deltas"


BYTES_PER_VALUE_FP32 = 4


@dataclass
class ServerRun:
    """The state of one federated run on the server."""

    cfg: Config
    prepared: Prepared
    bundle: ModelBundle
    planner: LayerPlanner
    strategy: LayerSkipStrategy | StrategyWrapper
    rundir: RunDir
    reporter: RoundReporter
    primary: str
    rows: list[MetricsRow] = field(default_factory=list)
    last_eval: dict[str, Any] = field(default_factory=dict)
    score_sites: bool = False
    """Evaluate once: per-site figures come from the server's global-test predictions
    (:mod:`fedskip.fl.site_eval`) and the clients are not asked to evaluate."""
    last_sites: dict[str, Any] = field(default_factory=dict)
    seconds_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stopped: str = ""
    """Why the privacy budget ended the run early (the round loop's ``stopped``)."""
    choice: ValidationChoice | None = None
    """``val-fraction`` > 0: the plateau rule and the best-validation round."""
    best_state: dict[str, np.ndarray] = field(default_factory=dict)
    """The global state of the best-validation round (exported at the end)."""
    last_val: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ evaluation
    def load_global(self, arrays: ArrayRecord) -> None:
        from fedskip.models.freeze import load_trainable_state

        load_trainable_state(self.bundle.model, messages.to_torch(arrays), strict_keys=False)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Server-side evaluation of the global model on the global test set (and, with
        :attr:`score_sites`, of every site on its slice of the same predictions); with a
        validation split also on the clients' validation documents (:attr:`last_val`)."""
        from fedskip.models.loading import resolve_device
        from fedskip.pipeline import activation_cache, collator, encode
        from fedskip.train.engine import predict
        from fedskip.train.metrics import score

        tokenizer, cfg, prepared = self.bundle.tokenizer, self.cfg, self.prepared
        if not prepared.global_test and not prepared.val_docs:
            return None
        self.load_global(arrays)

        def predict_docs(docs: list[Any]) -> tuple[Any, list[np.ndarray]]:
            encoded = encode(docs, tokenizer, prepared, cfg)
            return encoded, predict(
                self.bundle.model,
                encoded.features,
                collator(tokenizer, prepared),
                batch_size=cfg.batch_size,
                device=resolve_device(cfg.device),
                cache=activation_cache(cfg, self.bundle.stack, tokenizer),
            )

        if prepared.val_docs:  # [validation] the clients' held-out documents, scored here
            self.last_val = score(*predict_docs(prepared.val_docs))
        if not prepared.global_test:
            return None
        encoded, logits = predict_docs(prepared.global_test)
        self.last_eval = score(encoded, logits)
        if self.score_sites:
            from fedskip.fl.site_eval import site_scores

            self.last_sites, mean = site_scores(
                prepared, lambda docs: encode(docs, tokenizer, prepared, cfg), logits, score
            )
            self.strategy.record(server_round).client_eval = mean
        return messages.to_metric_record(self.last_eval)

    # ------------------------------------------------------------------ per round
    def on_round_end(self, server_round: int, arrays: ArrayRecord, record: RoundRecord) -> None:
        names = self.site_names()
        sites = self.last_sites or site_figures(record.site_metrics, names)  # the global model
        personal = {}
        if self.cfg.personalize != "none":  # [personalize] the sites scored their own models
            personal = personal_eval(record.site_metrics, names, prefix=messages.PERSONAL_PREFIX)
        row = round_row(
            record,
            self.last_eval,
            self.rows,
            elapsed=self.elapsed(),
            site_eval=sites,
            personal=personal,
        )
        row.val = self.last_val
        if row.epsilon is None and unnoised(self.cfg):  # [privacy] ε = ∞ never travels
            row.epsilon = math.inf
        if self.choice is not None and self.choice.observe(server_round, row.val, row.scores):
            self.best_state = messages.to_numpy(arrays)
        self.last_eval, self.last_sites, self.last_val = {}, {}, {}
        self.rows.append(row)
        self.rundir.append_metrics(row)
        self.save(server_round, arrays)
        self.reporter.round(row, self.cfg.rounds)

    def site_names(self) -> dict[int, str]:
        """Client id → site name: as each site named itself on identification (a deployment's
        ``site-name``), else its data partition's name (simulation) — the same in both."""
        names = {} if self.cfg.data == "sites" else dict(enumerate(self.prepared.client_names))
        return {**names, **self.strategy.core.site_names}

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def save(self, server_round: int, arrays: ArrayRecord) -> None:
        ckpt = Checkpoint(
            round=server_round,
            global_state=messages.to_numpy(arrays),
            strategy=self.strategy.state_dict(),
            planner=self.planner.state_dict(),
            totals={"seconds": self.elapsed(), "wire": self.cfg.wire_compression},
            config=self.cfg.to_run_config(),
            rng=capture_rng(),
            validation=self.choice.state_dict() if self.choice is not None else {},
            best_state=self.best_state,
        )
        save_checkpoint(self.rundir.path, ckpt)

    @property
    def last_round(self) -> int:
        """The last round to train: ``rounds``, or the round a restored plateau stopped at."""
        if self.choice is not None and self.choice.stop:
            return self.choice.last_step
        return self.cfg.rounds


def setup(cfg: Config) -> ServerRun:
    """Data, model, planner, strategy and run directory for ``cfg``."""
    from fedskip.pipeline import prepare
    from fedskip.train.metrics import primary_metric

    prepared = prepare(cfg)
    bundle = load_bundle(cfg, prepared)
    planner = LayerPlanner(cfg, bundle)
    all_keys = [name for name, _ in bundle.model.named_parameters()]
    in_play = set(planner.candidate_keys())
    for name, param in bundle.model.named_parameters():
        # the server trains nothing; the flags mark which tensors the global state can change,
        # so server-side evaluation caches the frozen prefix below them
        param.requires_grad_(name in in_play)
    base = None
    if cfg.wire_compression != "none":  # [compression] instructions travel as global - base
        from fedskip.fl.wire_compression import base_values

        base = base_values(bundle.model, planner.candidate_keys())
    from fedskip.fl.site_eval import sites_scored_here

    score_sites = sites_scored_here(cfg, prepared)
    strategy = build_strategy(
        cfg,
        planner=planner,
        all_keys=all_keys,
        num_clients=prepared.num_clients,
        base=base,
        client_evaluation=not score_sites,  # evaluate once: no federated-evaluation messages
    )
    rundir = RunDir(cfg.out)
    primary = primary_metric(prepared.task_info)
    reporter = RoundReporter(quiet=cfg.quiet, primary=primary)
    run = ServerRun(
        cfg, prepared, bundle, planner, strategy, rundir, reporter, primary, score_sites=score_sites
    )
    if prepared.val_docs:
        run.choice = ValidationChoice.of(
            primary, patience=cfg.patience, min_delta=cfg.min_delta, min_rounds=cfg.min_rounds
        )
    return run


def initial_state(run: ServerRun) -> tuple[ArrayRecord, int]:
    """The global state and the last completed round: fresh, or from the checkpoint (resume)."""
    cfg = run.cfg
    params = dict(run.bundle.model.named_parameters())
    fresh = {k: params[k] for k in run.planner.candidate_keys()}
    if not cfg.resume:
        run.rundir.write_config(cfg)
        remove_checkpoint(run.rundir.path)
        return messages.to_array_record(fresh), 0
    refuse_another_run(run)
    ckpt = load_checkpoint(run.rundir.path)
    if set(ckpt.global_state) != set(fresh):
        raise_mismatch(run, ckpt)
    run.strategy.load_state_dict(ckpt.strategy)
    run.planner.load_state_dict(ckpt.planner)
    restore_rng(ckpt.rng)
    run.seconds_before = float(ckpt.totals.get("seconds", 0.0))
    if run.choice is not None and ckpt.validation:
        run.choice = ValidationChoice.from_state_dict(ckpt.validation)
        run.best_state = dict(ckpt.best_state)
    run.rundir.write_config(cfg, resume=True)
    run.rows = truncate_metrics(run.rundir, ckpt.round)
    state = {k: np.asarray(v, dtype=np.float32) for k, v in ckpt.global_state.items()}
    return messages.to_array_record(state), ckpt.round


def refuse_another_run(run: ServerRun) -> None:
    """Refuse to resume with a config that is not the run's own: the keys outside
    :data:`~fedskip.config.RESUME_MAY_CHANGE` must equal those of the run directory's
    ``config.json``. ``fedskip run --resume`` checks this before Ray starts; a deployment's
    ServerApp gets its config from ``flwr run`` (``resume=true`` in a regenerated app), so
    this is where a changed seed, dataset or privacy setting would otherwise continue another
    run's checkpoint — and mix two runs' rounds, and two privacy budgets, in one record."""
    path = run.rundir.config_path
    try:
        saved = read_run_config(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing, so resume=true cannot tell whose checkpoint this folder holds; "
            "start a new run in another out folder"
        ) from None
    pinned = with_run_wire(saved, run.rundir.path)
    if problem := resume_conflict(pinned, run.cfg):
        hint, wire = "", pinned.compression
        if saved.compression == "auto" and wire != run.cfg.wire_compression:
            hint = f" (compression=auto meant {wire} when it started: set compression={wire})"
        raise ConfigError(f"{path}: {problem}{hint}")


def raise_mismatch(run: ServerRun, ckpt: Checkpoint) -> None:
    raise ConfigError(
        f"{run.rundir.path}/checkpoint: its tensors do not match model={run.cfg.model} "
        f"method={run.cfg.method}; resume with the run's own config.json"
    )


def run_server(grid: Grid, cfg: Config) -> RunSummary:
    """Run (or resume) the federated training of ``cfg`` over ``grid``; returns the summary."""
    run = setup(cfg)
    ok = False
    try:
        arrays, done = initial_state(run)
        run.reporter.start(_header(run, done), done=[row.seconds for row in run.rows])
        loop = RoundLoop(run.strategy, train_exchange=_train_exchange(run))
        try:
            result = loop.start(
                grid=grid,
                initial_arrays=arrays,
                num_rounds=run.last_round,
                evaluate_fn=run.evaluate,
                start_round=done + 1,
                on_round_end=run.on_round_end,
                on_phase=lambda rnd, phase: run.reporter.phase(rnd, cfg.rounds, phase),
                until=lambda rnd: run.choice is not None and run.choice.stop,
            )
        finally:
            run.reporter.close()
        run.stopped = loop.stopped
        final = result.arrays if done < run.last_round else arrays
        summary = finish(run, final)
        ok = not summary.get("failed_rounds")
        return summary
    finally:
        run.rundir.close(ok=ok)  # the tracking runs end, marked failed after an error


def _train_exchange(run: ServerRun) -> Exchange:
    """Plain messages, or SecAgg+ for ``secagg=true`` (the server sees only the masked sum)."""
    if not run.cfg.secagg:
        return plain_exchange
    from fedskip.fl.secagg_server import SecAggExchange

    return SecAggExchange(run.cfg, train_keys=run.strategy.core.train_keys_of)


def finish(run: ServerRun, arrays: ArrayRecord) -> RunSummary:
    """Export the global model and write ``summary.json`` (:func:`fedskip.finish.finish_summary`);
    with a validation split the model exported (and audited) is the best-validation round's,
    and ``final_metric`` / ``best_metric`` are its test metric (``test_at_best``), never a best
    picked on the test set."""
    run.load_global(arrays)
    layers = sorted({b for row in run.rows for b in row.selected_layers})
    full_bytes = run.bundle.full_parameters * BYTES_PER_VALUE_FP32
    body = summarize(
        run.rows,
        cfg=run.cfg,
        primary=run.primary,
        full_model_bytes=full_bytes,
        exchanged_parameters=sum(int(np.prod(a.shape)) for a in arrays.values()),
        seconds=run.elapsed(),
        chosen_round=run.choice.plateau.best_round or None if run.choice is not None else None,
    )
    body["selected_layers"] = layers
    body["num_blocks"] = run.bundle.stack.num_blocks
    body["wire_compression"] = run.cfg.wire_compression  # compression=auto resolved
    body["out"] = str(run.rundir.path)
    chosen = None
    if run.choice is not None:  # [validation] report and export the best-validation round
        chosen = run.choice.summary()
        if run.best_state:
            run.load_global(messages.to_array_record(run.best_state))
    rows = [row.to_json() for row in run.rows]
    privacy = privacy_summary(run.cfg, rows, run.strategy, stopped=run.stopped)
    export = Export(
        run.bundle.model,
        run.bundle.tokenizer,
        run.bundle.stack,
        run.prepared,
        layers or None,
        sites=list(run.site_names().values()),
    )
    if run.cfg.personalize != "none":  # [personalize] the shared part with the seeded head
        body["personalization"] = personal_summary(run.rows, run.cfg.personalize)
        export.marker = {"personalized": run.cfg.personalize, "site_exports": "sites/<site>/model"}
    return finish_summary(
        body,
        headline(run.rows, run.primary, chosen=chosen),
        cfg=run.cfg,
        rundir=run.rundir,
        chosen=chosen,
        privacy=privacy,
        export=export,
    )


def _header(run: ServerRun, done: int) -> str:
    cfg, prepared = run.cfg, run.prepared
    what = (
        f"{cfg.method} ({cfg.layer_strategy}, k={cfg.layers})"
        if cfg.method_kind.trains != ALL
        else cfg.method
    )
    keys = run.planner.candidate_keys()
    size = sum(int(np.prod(run.bundle.model.get_parameter(k).shape)) for k in keys)
    resumed = f", resuming after round {done}" if done else ""
    return (
        f"fedskip: {what} on {cfg.model}, {prepared.num_clients} clients, {cfg.rounds} rounds; "
        f"{size:,} of {run.bundle.full_parameters:,} parameters in play "
        f"(≤ {human_bytes(size * _VALUE_BYTES.get(cfg.wire_compression, 4))} per client and "
        f"direction{_wire_note(cfg.wire_compression)}){resumed}"
    )
