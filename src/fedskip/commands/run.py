"""``fedskip run``: one harness for every training method.

Federated methods (``layerskip``, ``fedavg``, ``fedprox``, ``lora``) run the fedskip Flower app
on Flower's Simulation Engine (one SuperNode per client); ``centralized`` (all sites' data
pooled) and ``local`` (each site alone) call the training engine directly. Every method reads
the same data split and reports on the same global test set. ``--resume RUN_DIR`` continues an
interrupted federated run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fedskip.commands.common import add_config_args, config_from_args
from fedskip.config import Config
from fedskip.errors import ConfigError

FEDERATED = ("layerskip", "fedavg", "fedprox", "lora")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="federated training on Flower's Simulation Engine (default: layer skipping)",
        description=(
            "Train with the configured method. With no arguments: all-MiniLM-L6-v2 on the "
            "synthetic 4-hospital NER corpus, layer-skipping FedAvg on Flower's Simulation "
            "Engine. Writes OUT/config.json, metrics.jsonl (one row per round), summary.json, "
            "checkpoint/ and model/ (loadable with plain transformers)."
        ),
    )
    add_config_args(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the federated run in RUN_DIR from its last checkpoint (its config.json; "
        "--set may change e.g. rounds)",
    )
    parser.set_defaults(func=run)


def resume_config(args: argparse.Namespace) -> Config:
    """The config of the run in ``--resume RUN_DIR`` (+ ``--set`` overrides), resuming."""
    folder = Path(args.resume)
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not a run directory (no config.json) for --resume")
    if args.config:
        raise ConfigError("--resume uses the run's own config.json; drop --config")
    try:
        saved = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    cfg = Config.from_mapping(saved)
    if cfg.method not in FEDERATED:
        raise ConfigError(f"--resume: method={cfg.method} runs are not resumable; run it again")
    from fedskip.fl.checkpoint import DIR, find_checkpoint

    if find_checkpoint(folder) is None:
        raise ConfigError(f"{folder / DIR}: no checkpoint to resume from (no round completed)")
    pairs = [p for group in args.overrides for p in group]
    from fedskip.config import parse_overrides

    cfg = Config.from_mapping(parse_overrides(pairs), base=cfg)
    return cfg.replace(out=str(folder), resume=True, quiet=bool(args.quiet) or cfg.quiet)


def run(args: argparse.Namespace) -> int:
    from fedskip.tracking import require_backends

    cfg = resume_config(args) if args.resume else config_from_args(args)
    require_backends(cfg)  # a one-line error before any data is read
    if cfg.method == "centralized":
        from fedskip.commands.centralized import format_summary, train_centralized

        print(format_summary(train_centralized(cfg)))
        return 0
    if cfg.method == "local":
        print(format_local(train_local(cfg)))
        return 0
    from fedskip.fl.simulation import simulate

    summary = simulate(cfg)
    print(format_federated(summary))
    return 1 if summary.get("failed_rounds") else 0


def format_federated(summary: dict[str, Any]) -> str:
    """The closing lines of a federated run: final metric, bytes, reduction vs FedAvg."""
    from fedskip.fl.progress import human_bytes

    name = summary["primary_metric"]
    label = "F1" if name == "f1" else name
    final, best = summary.get("final_metric"), summary.get("best_metric")
    lines = [
        f"final {label} {final:.4f} (best {best:.4f} in round {summary['best_round']})"
        if isinstance(final, float) and isinstance(best, float)
        else f"final {label}: no evaluation (empty global test set)"
    ]
    moved = summary["bytes"]
    reduction = summary.get("reduction")
    lines.append(
        f"bytes exchanged: {human_bytes(moved['total'])} (down {human_bytes(moved['down'])}, "
        f"up {human_bytes(moved['up'])}) in {summary['rounds_completed']} rounds"
    )
    if reduction is not None:
        lines.append(
            f"reduction vs full-model FedAvg: {100 * reduction:.1f}% "
            f"(FedAvg would move {human_bytes(summary['fedavg_bytes'])})"
        )
    if summary.get("failed_rounds"):
        lines.append(f"FAILED rounds (too few valid replies): {summary['failed_rounds']}")
    lines.append(f"wall time {summary['seconds']:.1f} s; run directory: {summary['out']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- local-only baseline
def train_local(cfg: Config) -> dict[str, Any]:
    """Each client trains alone on its own data (``epochs`` epochs) and is scored on the global
    test set; no model is exported (there is no single model). Returns ``summary.json``."""
    from fedskip.pipeline import prepare
    from fedskip.rundir import RunDir
    from fedskip.train.metrics import primary_metric

    started = time.perf_counter()
    prepared = prepare(cfg)
    rundir = RunDir(cfg.out)
    rundir.write_config(cfg)
    primary = primary_metric(prepared.task_info)
    sites = []
    try:
        for index, name in enumerate(prepared.client_names):
            scores = _train_one_site(cfg, prepared, index, rundir, primary)
            sites.append({"client": index, "site": name, **scores})
    except BaseException:
        rundir.close(ok=False)
        raise
    rundir.close()
    values = [s[primary] for s in sites if isinstance(s.get(primary), float)]
    summary = {
        "method": "local",
        "model": cfg.model,
        "task": prepared.task,
        "primary_metric": primary,
        "sites": sites,
        "mean_metric": sum(values) / len(values) if values else None,
        "best_metric": max(values) if values else None,
        "seconds": time.perf_counter() - started,
        "out": str(rundir.path),
    }
    rundir.write_summary(summary)
    return summary


def _train_one_site(
    cfg: Config, prepared: Any, index: int, rundir: Any, primary: str
) -> dict[str, Any]:
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import (
        activation_cache,
        apply_plan,
        build_model,
        collator,
        encode,
        importance_scores,
        is_full_finetune,
        layer_plan,
    )
    from fedskip.train.engine import TrainSettings, evaluate, train

    docs = prepared.client_train[index]
    model, tokenizer, stack = build_model(cfg, prepared, selected=[0])
    scores = None
    if cfg.layer_strategy == "importance" and not is_full_finetune(cfg, stack):
        scores = importance_scores(cfg, model, stack, tokenizer, prepared, docs)
    apply_plan(model, stack, layer_plan(cfg, stack, 1, scores=scores), cfg)
    collate, device = collator(tokenizer, prepared), resolve_device(cfg.device)
    test_set = encode(prepared.global_test, tokenizer, prepared, cfg)
    cache = activation_cache(cfg, stack, tokenizer)
    last: dict[str, Any] = {}

    def after_epoch(epoch: int, loss: float) -> None:
        last.clear()
        scores = evaluate(
            model, test_set, collate, batch_size=cfg.batch_size, device=device, cache=cache
        )
        last.update(scores)
        rundir.append_metrics({"client": index, "epoch": epoch, "train_loss": loss, **last})
        if not cfg.quiet:
            name = prepared.client_names[index]
            print(f"{name} epoch {epoch}/{cfg.epochs}: loss {loss:.4f}, {primary} "
                  f"{last.get(primary, 0.0):.4f}", flush=True)  # fmt: skip

    train(
        model,
        encode(docs, tokenizer, prepared, cfg).features,
        collate,
        TrainSettings.from_config(cfg),
        epochs=cfg.epochs,
        device=device,
        desc=f"local {prepared.client_names[index]}",
        on_epoch_end=after_epoch,
        cache=cache,
    )
    return dict(last)


def format_local(summary: dict[str, Any]) -> str:
    name = summary["primary_metric"]
    lines = [f"{s['site']}: {name} {s.get(name, float('nan')):.4f}" for s in summary["sites"]]
    mean = summary.get("mean_metric")
    if isinstance(mean, float):
        lines.append(f"mean over sites {name} {mean:.4f}; best {summary['best_metric']:.4f}")
    lines.append(f"wall time {summary['seconds']:.1f} s; run directory: {summary['out']}")
    return "\n".join(lines)
