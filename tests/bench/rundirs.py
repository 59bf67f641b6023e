"""Tiny run directories in the exact formats the training commands write.

Federated runs go through the real row/summary writers
(:func:`fedskip.federation.round_rows.round_row`, :func:`~fedskip.federation.round_rows.summarize`,
:func:`~fedskip.federation.round_rows.headline`, :class:`fedskip.records.rundir.RunDir`);
centralized and local-only runs write :class:`~fedskip.records.schema.MetricsRow` epoch rows as
their run entries do. Only the numbers are made up, so that reports can be checked against
hand-computed values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedskip.config import Config
from fedskip.federation.round_rows import headline, round_row, summarize
from fedskip.federation.round_types import RoundRecord
from fedskip.records.rundir import RunDir
from fedskip.records.schema import MetricsRow, RunSummary

FULL_PARAMS = 1000  # parameters of the pretend model: full FedAvg moves 4,000 bytes each way


def federated_run(
    out: Path,
    *,
    method: str,
    scores: Sequence[float],
    bytes_per_round: int,
    task: str = "ner",
    clients: int = 2,
    selected: Sequence[int] = (4, 5),
    summary_extra: dict[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """A finished federated run: ``scores[i]`` is the global-test metric after round i+1;
    each round moves ``bytes_per_round`` down and the same up (``summary_extra``: more
    ``summary.json`` fields, e.g. a validation choice's ``test_at_best``; ``selected``: the
    blocks of every round, empty as a LoRA run logs them)."""
    metric = "f1" if task == "ner" else "macro_f1"
    cfg = Config.from_mapping(
        {"method": method, "task": task, "rounds": len(scores), "out": str(out), **settings}
    )
    rundir = RunDir(out)
    rundir.write_config(cfg)
    rows: list[MetricsRow] = []
    for i, score in enumerate(scores, start=1):
        record = RoundRecord(
            round=i,
            layers=list(selected),
            clients=list(range(clients)),
            bytes_down=bytes_per_round,
            bytes_up=bytes_per_round,
            replies_ok=clients,
            client_eval={metric: score - 0.05},
            seconds=2.0,
        )
        row = round_row(record, {metric: score, "round": i}, rows, elapsed=2.0 * i)
        rows.append(row)
        rundir.append_metrics(row)
    summary = summarize(
        rows,
        cfg=cfg,
        primary=metric,
        full_model_bytes=4 * FULL_PARAMS,
        exchanged_parameters=bytes_per_round // 4,
        seconds=2.0 * len(scores),
    )
    extra = {"selected_layers": list(selected), "num_blocks": 6, **(summary_extra or {})}
    top = headline(rows, metric).to_json()
    rundir.write_summary(RunSummary({**summary, **top, **extra}))
    return out


def centralized_run(
    out: Path,
    *,
    scores: Sequence[float],
    task: str = "ner",
    layers: int = 6,
    summary_extra: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """A finished ``fedskip centralized`` run with one test score per epoch, training the top
    ``layers`` of 6 blocks."""
    metric = "f1" if task == "ner" else "macro_f1"
    cfg = Config.from_mapping(
        {
            "method": "centralized",
            "task": task,
            "epochs": len(scores),
            "out": str(out),
            "layers": layers,
            **settings,
        }
    )
    rundir = RunDir(out)
    rundir.write_config(cfg)
    for epoch, score in enumerate(scores, start=1):
        rundir.append_metrics(
            MetricsRow(
                epoch=epoch,
                train_loss=1.0 / epoch,
                elapsed_s=3.0 * epoch,
                scores={metric: score, "precision": score},
            )
        )
    rundir.write_summary(
        RunSummary(
            {
                "method": "centralized",
                "task": task,
                "model": "minilm",
                "primary_metric": metric,
                "final": {metric: scores[-1]},
                "selected_layers": list(range(6 - layers, 6)),
                "num_blocks": 6,
                "seconds": 3.0 * len(scores),
                **(summary_extra or {}),
            }
        )
    )
    return out


def local_run(out: Path, *, scores: Sequence[Sequence[float]], task: str = "ner") -> Path:
    """A finished local-only run (keys of ``fedskip run`` with method=local): ``scores[c][e]``
    is client c's global-test metric after epoch e+1."""
    metric = "f1" if task == "ner" else "macro_f1"
    cfg = Config.from_mapping({"method": "local", "task": task, "out": str(out)})
    rundir = RunDir(out)
    rundir.write_config(cfg)
    for client, per_epoch in enumerate(scores):
        for epoch, score in enumerate(per_epoch, start=1):
            rundir.append_metrics(
                MetricsRow(client=client, epoch=epoch, train_loss=0.5, scores={metric: score})
            )
    finals = [s[-1] for s in scores]
    rundir.write_summary(
        RunSummary(
            {
                "method": "local",
                "task": task,
                "primary_metric": metric,
                "sites": [{"client": c, metric: f} for c, f in enumerate(finals)],
                "mean_metric": sum(finals) / len(finals),
                "best_metric": max(finals),
                "seconds": 7.0,
            }
        )
    )
    return out
