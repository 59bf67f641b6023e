"""The round rows (:class:`~fedskip.records.schema.MetricsRow`) and the ``summary.json`` of a
federated run (Flower-free).

A row per round: ``status`` (ok / failed), ``train_loss`` (example-weighted mean over the
accepted clients), the global-test scores, the clients' federated evaluation, traffic in bytes
(training: what the server sent / received, measured on the messages; running totals), this
round's seconds, each accepted client's own training seconds, the elapsed time, the blocks,
the clients and their replies (see
:mod:`fedskip.records.schema` for the JSON layout).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.federation.round_types import RoundRecord
from fedskip.federation.validation import NUM_EXAMPLES
from fedskip.finish import GLOBAL_TEST, SITES, Headline
from fedskip.models.presets import model_init
from fedskip.records.rundir import RunDir, to_jsonable
from fedskip.records.schema import MetricsRow, RunSummary, as_number

PERSONAL = "personal-"  # fedskip.fl.messages.PERSONAL_PREFIX (messages imports flwr)


def round_row(
    record: RoundRecord,
    server_eval: Mapping[str, Any],
    previous: Sequence[MetricsRow],
    *,
    elapsed: float,
    site_eval: Mapping[str, Any] | None = None,
    personal: Mapping[str, Any] | None = None,
) -> MetricsRow:
    """The ``metrics.jsonl`` row of one round (``previous``: the rows before it)."""
    last = previous[-1] if previous else MetricsRow(round=0)
    return MetricsRow(
        round=record.round,
        status="failed" if record.failed else "ok",
        train_loss=record.train_metrics.get("train-loss"),
        scores={k: v for k, v in server_eval.items() if k not in ("round",)},
        client_eval=dict(record.client_eval),
        bytes_down=record.bytes_down,
        bytes_up=record.bytes_up,
        bytes_eval=record.bytes_eval,
        cum_bytes_down=last.cum_bytes_down + record.bytes_down,
        cum_bytes_up=last.cum_bytes_up + record.bytes_up,
        seconds=record.seconds,
        elapsed_s=elapsed,
        selected_layers=list(record.layers),
        clients=list(record.clients),
        replies_ok=record.replies_ok,
        replies_rejected=record.replies_rejected,
        rejections=list(record.rejections),
        failure=record.failure,
        epsilon=record.train_metrics.get("epsilon"),  # [privacy] ε spent so far (DP runs)
        dp_step=dp_step_of(record.train_metrics),
        site_eval=dict(site_eval or {}),
        personal_eval=dict(personal or {}),
        train_seconds={str(c): s for c, s in sorted(record.train_seconds.items())},
    )


DP_STEP_METRICS = {
    "dp-signal-norm": "signal_norm",
    "dp-noise-norm": "noise_norm",
    "dp-clipped-share": "clipped_share",
    "dp-unit-norm": "unit_norm",
}
"""Train-reply metrics of DP-SGD clients (:func:`fedskip.fl.dpsgd_node.dpsgd_metrics`) and their
names in a round row's ``dp_step``."""


def dp_step_of(train_metrics: Mapping[str, Any]) -> dict[str, float]:
    """A round row's ``dp_step`` from the aggregated train metrics (empty without DP-SGD)."""
    return {
        name: float(train_metrics[key])
        for key, name in DP_STEP_METRICS.items()
        if key in train_metrics
    }


def summarize(
    rows: Sequence[MetricsRow],
    *,
    cfg: Config,
    primary: str,
    full_model_bytes: int,
    exchanged_parameters: int,
    seconds: float,
    chosen_round: int | None = None,
) -> RunSummary:
    """``summary.json``'s federated body: rounds, the last round's scores (``final``), each
    site's scores of the reported model (``site_metrics``: those of ``chosen_round``, the
    round chosen on validation, when it has them, else of the last round that has them),
    traffic, reduction vs full-model FedAvg (the headline metrics: :func:`headline`).

    ``full_model_bytes``: the plain model's parameters × 4 bytes. Full-model FedAvg over the
    same rounds and clients would move that once down and once up per sampled client and round;
    ``reduction`` = 1 − (bytes moved for training) / (that amount).
    """
    final = rows[-1].to_json() if rows else {}
    evaluated = next((r for r in rows if r.round == chosen_round and r.site_eval), None)
    evaluated = evaluated or next((r for r in reversed(rows) if r.site_eval), None)
    moved = int(final.get("cum_bytes", 0))
    client_rounds = sum(len(r.clients) for r in rows)
    fedavg = 2 * full_model_bytes * client_rounds
    return RunSummary(
        {
            "method": cfg.method,
            "model": cfg.model,
            "model_init": model_init(cfg.model, cfg.model_init),
            "task": cfg.task,
            "primary_metric": primary,
            "rounds": cfg.rounds,
            "rounds_completed": len(rows),
            "failed_rounds": [r.round for r in rows if r.status == "failed"],
            "final": {k: v for k, v in final.items() if k in _METRIC_KEYS or k == primary},
            "site_metrics": copy.deepcopy(evaluated.site_eval) if evaluated else {},
            "bytes": {
                "down": int(final.get("cum_bytes_down", 0)),
                "up": int(final.get("cum_bytes_up", 0)),
                "total": moved,
                "eval": sum(r.bytes_eval for r in rows),
            },
            "fedavg_bytes": fedavg,
            "reduction": 1.0 - moved / fedavg if fedavg else None,
            "parameters": {"exchanged": exchanged_parameters, "full_model": full_model_bytes // 4},
            "clients_per_round": [len(r.clients) for r in rows],
            "seconds": seconds,
            **client_train_seconds(rows),
        }
    )


def client_train_seconds(rows: Sequence[MetricsRow]) -> dict[str, float]:
    """``summary.json``'s ``client_train_seconds``: the accepted replies' own training seconds
    summed over clients and rounds (wall seconds at the sites; rejected replies trained too and
    are not counted), or nothing when a round lacks any accepted reply's figure (rows written
    before the key existed, or a site that did not report it: the sum would undercount)."""
    trained = [r for r in rows if r.replies_ok]
    if not trained or any(len(r.train_seconds) != r.replies_ok for r in trained):
        return {}
    return {
        "client_train_seconds": sum(float(s) for r in trained for s in r.train_seconds.values())
    }


def headline(
    rows: Sequence[MetricsRow], primary: str, *, chosen: Mapping[str, Any] | None = None
) -> Headline:
    """The run's ``final_metric`` / ``best_metric`` (:mod:`fedskip.finish`) from its rounds: the
    global model on the global test set where the server scored one, else the sites' federated
    evaluation of it (a coordinator without test data: ``final_metric_source`` = ``sites``)."""
    on_test = any(as_number(r.scores.get(primary)) is not None for r in rows)
    curve = [
        (r.step, as_number((r.scores if on_test else r.client_eval).get(primary))) for r in rows
    ]
    return Headline.of_curve(curve, chosen=chosen, source=GLOBAL_TEST if on_test else SITES)


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


SiteNames = Mapping[int, str] | Sequence[str]
"""Client id → site name: a mapping, or a list indexed by client id."""


def site_name(client: int, names: SiteNames) -> str:
    """A client's site name (``names[client]`` when known, else ``client-<id>``)."""
    if isinstance(names, Mapping):
        return names.get(client) or f"client-{client}"
    return names[client] if 0 <= client < len(names) else f"client-{client}"


def site_figures(
    site_metrics: Mapping[int, Mapping[str, Any]], names: SiteNames, *, prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """Per site, the metrics of its evaluation reply: those named ``prefix`` + metric (prefix
    removed) when ``prefix`` is given, else the global model's (no ``personal-`` metrics)."""
    out: dict[str, dict[str, Any]] = {}
    for client in sorted(site_metrics):
        metrics = site_metrics[client]
        if prefix:
            chosen = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
        else:
            chosen = {
                k: v for k, v in metrics.items() if k != NUM_EXAMPLES and not k.startswith(PERSONAL)
            }
        out[site_name(client, names)] = chosen
    return out


def personal_eval(
    site_metrics: Mapping[int, Mapping[str, Any]], names: SiteNames, *, prefix: str
) -> dict[str, Any]:
    """``personalize``: the row's ``personal_eval`` from the sites' evaluation replies —
    per site its own model's scores (metrics named ``prefix`` + metric) and the global model's,
    and the example-weighted mean of each over the sites."""
    own = site_figures(site_metrics, names, prefix=prefix)
    shared = site_figures(site_metrics, names)
    if not own:
        return {}
    sites = {name: {"personal": own[name], "global": shared[name]} for name in own}
    weights = {site_name(c, names): float(m.get(NUM_EXAMPLES, 1)) for c, m in site_metrics.items()}
    total = sum(weights.values())
    mean = {
        part: {
            k: sum(weights[s] * float(sites[s][part][k]) for s in sites) / total
            for k in sites[next(iter(sites))][part]
            if all(k in sites[s][part] for s in sites)
        }
        for part in ("personal", "global")
    }
    return {"sites": sites, "mean": mean}


def personal_summary(rows: Sequence[MetricsRow], mode: str) -> dict[str, Any]:
    """``summary.json``'s ``personalization``: the last evaluated round's per-site and mean
    figures (each site's own model, and the global model — shared part with the seeded head —
    on the same split)."""
    last = next((r for r in reversed(rows) if r.personal_eval), None)
    if last is None:
        return {"mode": mode}
    return {"mode": mode, "round": last.round, **copy.deepcopy(last.personal_eval)}


def truncate_metrics(rundir: RunDir, last_round: int) -> list[MetricsRow]:
    """Keep the ``metrics.jsonl`` rows up to ``last_round`` (a resumed run rewrites the rest);
    a torn last line goes too. A round up to ``last_round`` without its row (a torn line the
    checkpoint covers) is a :class:`ConfigError`: resuming would leave a gap in the record."""
    rows = [r for r in rundir.read_metrics() if r.step <= last_round]
    path = rundir.metrics_path
    have = {r.step for r in rows}
    missing = [n for n in range(1, last_round + 1) if n not in have]
    if missing:
        line = sum(1 for r in rows if r.step < missing[0]) + 1
        raise ConfigError(
            f"{path}:{line}: the row of round {missing[0]} is torn or missing, but the checkpoint "
            f"is after round {last_round}: resuming would leave a gap in the record; restore "
            "the row, or run again without --resume"
        )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(to_jsonable(r.to_json())) + "\n" for r in rows), "utf-8")
    os.replace(tmp, path)
    return rows
