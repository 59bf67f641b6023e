"""Every use of Flower internals in one place (flwr 1.42).

fedskip leans on a few things Flower does not promise to keep: a strategy's private
``_construct_messages``, the state a ``FedOpt`` strategy keeps between ``configure_train`` and
``aggregate_train`` (``current_arrays``, ``m_t``, ``v_t``), the ``clipping_norm`` config key of
Flower's client-side DP clipping and the metric-averaging helper of its strategies. They are
used through this module only; ``tests/fl/test_flower_compat.py`` exercises each against the
installed Flower, so an upgrade that changes one fails there, loudly, instead of somewhere deep
in a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.fedopt import FedOpt
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

__all__ = [
    "KEY_CLIPPING_NORM",
    "aggregate_metricrecords",
    "construct_messages",
    "fedopt_step",
]

Moments = dict[str, np.ndarray]


def construct_messages(
    strategy: FedAvg, content: RecordDict, node_ids: Iterable[int], message_type: str
) -> list[Message]:
    """One message per node carrying ``content``, built as Flower's own FedAvg builds them
    (``FedAvg._construct_messages``)."""
    return list(strategy._construct_messages(content, list(node_ids), message_type))


def fedopt_step(
    optimizer: FedOpt,
    server_round: int,
    previous: Mapping[str, np.ndarray],
    average: Mapping[str, np.ndarray],
    moments: tuple[Moments, Moments],
) -> dict[str, np.ndarray]:
    """Flower's server-optimizer update (FedAdam, FedYogi, ...) of the tensors in ``average``.

    ``previous``: their global values before the round; ``average``: this round's mean of the
    clients' values; ``moments``: first and second moment estimates of *every* tensor, by name
    (updated in place for the tensors of this round). The optimizer sees only this round's
    tensors — its ``current_arrays``, ``m_t`` and ``v_t`` are set to them — and one reply of
    weight 1 holding the average, so its own averaging leaves the average unchanged.
    """
    m_all, v_all = moments
    keys = list(average)
    optimizer.current_arrays = {k: np.asarray(previous[k]) for k in keys}
    optimizer.m_t = {k: m_all.get(k, np.zeros_like(previous[k])) for k in keys}
    optimizer.v_t = {k: v_all.get(k, np.zeros_like(previous[k])) for k in keys}
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.asarray(v)) for k, v in average.items()}),
            "metrics": MetricRecord({optimizer.weighted_by_key: 1}),
        }
    )
    reply = Message(content=content, dst_node_id=0, message_type=MessageType.TRAIN)
    stepped, _ = optimizer.aggregate_train(server_round, [reply])
    if stepped is None:  # pragma: no cover - Flower returns None only without valid replies
        raise RuntimeError("Flower's server optimizer returned no arrays")
    m_all.update(optimizer.m_t or {})
    v_all.update(optimizer.v_t or {})
    return {k: np.asarray(stepped[k].numpy(), dtype=np.float32) for k in keys}
