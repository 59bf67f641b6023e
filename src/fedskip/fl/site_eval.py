"""Evaluate once: when the server holds every client's test split, score the sites from the
server's own predictions instead of asking every client to score them again.

In simulation with ``partition=natural`` the global test set is exactly the clients' test splits
one after another (:func:`fedskip.pipeline.prepare`), so each round's server-side predictions on
it contain every client's predictions. Per-site metrics are computed from those slices and
aggregated as Flower aggregates federated-evaluation replies (the example-weighted mean,
:func:`flwr.serverapp.strategy.strategy_utils.aggregate_metricrecords`), so ``client_eval`` keeps
its meaning. Where the clients' test data is not the server's (the Deployment Engine with
``data=sites``, pooled partitions), real federated evaluation stays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedskip.config import Config
from fedskip.pipeline import Prepared

Encode = Callable[[Sequence[Any]], Any]
"""Documents → their encoding (the pipeline's :func:`~fedskip.pipeline.encode`)."""


def sites_scored_here(cfg: Config, prepared: Prepared) -> bool:
    """Whether the server can score every client's test split from its global-test predictions."""
    if not cfg.eval_clients or cfg.partition != "natural" or not prepared.global_test:
        return False
    if cfg.personalize != "none":  # only a site can score its own (personalized) model
        return False
    joined = [doc for part in prepared.client_test for doc in part]
    return len(joined) == len(prepared.global_test) and all(
        a is b for a, b in zip(joined, prepared.global_test)
    )


def site_scores(
    prepared: Prepared,
    encode: Encode,
    logits: Sequence[np.ndarray],
    score: Callable[[Any, Sequence[np.ndarray]], dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """(metrics per client name, their example-weighted mean) from the global-test ``logits``.

    Clients without test examples are left out, as a client without test examples fails its
    federated evaluation."""
    from flwr.app import RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

    from fedskip.federation.validation import NUM_EXAMPLES
    from fedskip.fl import messages
    from fedskip.fl.round_loop import scalars

    per_site: dict[str, dict[str, Any]] = {}
    replies: list[RecordDict] = []
    start = 0
    for name, docs in zip(prepared.client_names, prepared.client_test):
        encoded = encode(docs)
        count = len(encoded.features)
        part = logits[start : start + count]
        start += count
        if count == 0:
            continue
        metrics = score(encoded, part)
        per_site[name] = messages.numeric_metrics(metrics)
        replies.append(
            RecordDict(
                {messages.METRICS: messages.to_metric_record({NUM_EXAMPLES: count, **metrics})}
            )
        )
    if start != len(logits):
        raise RuntimeError(
            f"the clients' test splits encode to {start} examples, the global test set to "
            f"{len(logits)}: cannot score the sites from the global predictions"
        )
    mean = scalars(aggregate_metricrecords(replies, NUM_EXAMPLES)) if replies else {}
    return per_site, mean
