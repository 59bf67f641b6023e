"""Rows of ``metrics.jsonl`` and the ``summary.json`` of a federated run (Flower-free).

A row per round: ``round``, ``status`` (ok / failed), ``train_loss`` (example-weighted mean over
the accepted clients), the global-test metrics at the top level (``f1``, ``precision``,
``recall``, ``per_type`` for NER; ``accuracy``/``macro_f1``… for classification), the clients'
federated evaluation under ``client_eval``, traffic in bytes — ``bytes_down`` / ``bytes_up``
(training: what the server sent / received, measured on the messages), ``bytes_eval``
(federated-evaluation instructions), running totals ``cum_bytes_down``, ``cum_bytes_up``,
``cum_bytes`` (down + up) — ``seconds`` (this round), ``elapsed_s``, ``selected_layers``,
``clients``, ``replies_ok``, ``replies_rejected``, ``rejections`` and ``failure``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fedskip.config import Config
from fedskip.fl.rounds import RoundRecord


def round_row(
    record: RoundRecord,
    server_eval: Mapping[str, Any],
    previous: Sequence[Mapping[str, Any]],
    *,
    elapsed: float,
) -> dict[str, Any]:
    """The ``metrics.jsonl`` row of one round (``previous``: the rows before it)."""
    last = previous[-1] if previous else {}
    down = int(last.get("cum_bytes_down", 0)) + record.bytes_down
    up = int(last.get("cum_bytes_up", 0)) + record.bytes_up
    evaluation = {k: v for k, v in server_eval.items() if k not in ("round",)}
    return {
        "round": record.round,
        "status": "failed" if record.failed else "ok",
        "train_loss": record.train_metrics.get("train-loss"),
        **evaluation,
        "client_eval": dict(record.client_eval),
        "bytes_down": record.bytes_down,
        "bytes_up": record.bytes_up,
        "bytes_eval": record.bytes_eval,
        "cum_bytes_down": down,
        "cum_bytes_up": up,
        "cum_bytes": down + up,
        "seconds": record.seconds,
        "elapsed_s": elapsed,
        "selected_layers": list(record.layers),
        "clients": list(record.clients),
        "replies_ok": record.replies_ok,
        "replies_rejected": record.replies_rejected,
        "rejections": list(record.rejections),
        "failure": record.failure,
        "epsilon": record.train_metrics.get("epsilon"),  # [privacy] ε spent so far (DP runs)
    }


def summarize(
    rows: Sequence[Mapping[str, Any]],
    *,
    cfg: Config,
    primary: str,
    full_model_bytes: int,
    exchanged_parameters: int,
    seconds: float,
) -> dict[str, Any]:
    """``summary.json``: final and best metric, traffic, reduction vs full-model FedAvg.

    ``full_model_bytes``: the plain model's parameters × 4 bytes. Full-model FedAvg over the
    same rounds and clients would move that once down and once up per sampled client and round;
    ``reduction`` = 1 − (bytes moved for training) / (that amount).
    """
    scored = [r for r in rows if isinstance(r.get(primary), (int, float))]
    best = max(scored, key=lambda r: r[primary], default=None)
    final = rows[-1] if rows else {}
    moved = int(final.get("cum_bytes", 0))
    client_rounds = sum(len(r.get("clients", [])) for r in rows)
    fedavg = 2 * full_model_bytes * client_rounds
    return {
        "method": cfg.method,
        "model": cfg.model,
        "task": cfg.task,
        "primary_metric": primary,
        "rounds": cfg.rounds,
        "rounds_completed": len(rows),
        "failed_rounds": [r["round"] for r in rows if r.get("status") == "failed"],
        "final": {k: v for k, v in final.items() if k in _METRIC_KEYS or k == primary},
        "final_metric": final.get(primary),
        "best_metric": best[primary] if best else None,
        "best_round": best["round"] if best else None,
        "bytes": {
            "down": int(final.get("cum_bytes_down", 0)),
            "up": int(final.get("cum_bytes_up", 0)),
            "total": moved,
            "eval": sum(int(r.get("bytes_eval", 0)) for r in rows),
        },
        "fedavg_bytes": fedavg,
        "reduction": 1.0 - moved / fedavg if fedavg else None,
        "parameters": {"exchanged": exchanged_parameters, "full_model": full_model_bytes // 4},
        "clients_per_round": [len(r.get("clients", [])) for r in rows],
        "seconds": seconds,
    }


_METRIC_KEYS = (
    "f1",
    "precision",
    "recall",
    "per_type",
    "accuracy",
    "macro_f1",
    "micro_f1",
    "auroc",
    "train_loss",
)


def truncate_metrics(rundir: Any, last_round: int) -> list[dict[str, Any]]:
    """Keep the ``metrics.jsonl`` rows up to ``last_round`` (a resumed run rewrites the rest)."""
    rows = [r for r in rundir.read_metrics() if int(r.get("round", 0)) <= last_round]
    path = rundir.metrics_path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    os.replace(tmp, path)
    return rows
