"""Secure aggregation (SecAgg+, ``secagg=true``): the server only ever sees the sum of masked
updates, never one hospital's update.

What is protected, against whom: an honest-but-curious server (and anyone reading the traffic)
learns only the (weighted) mean of the selected layers' updates of the clients that finished the
round — not any single client's update — as long as fewer than ``secagg-threshold`` clients
collude with it. ``num-examples`` and the train metrics still travel in clear (Flower's protocol).
Up to ``secagg-shares − secagg-threshold`` neighbours of a client may drop out: their masks are
reconstructed from the shares the others hold.

Flower 1.42 offers SecAgg+ only on its legacy path, so the training exchange of each round runs
Flower's ``SecAggPlusWorkflow`` (:mod:`fedskip.fl.secagg_server`; the rest of the run is the
main path) and, on the client, a ``NumPyClient`` behind ``secaggplus_mod``. The work is
fedskip's core through the node's one training step (:func:`fedskip.fl.node.train_on_node`, as
the plain path: the same runtime — ``model-path`` included —, DP-SGD accountant, personal
tensors and layer plan; the work is :mod:`fedskip.federation.client`'s).
Identification and federated evaluation are plain messages, handled by the normal ClientApp
handlers. What travels is fixed per round and identical for all clients, as SecAgg+ needs:

- instruction: the payload tensors (trained + changed-before) in the order named by the config
  key ``fedskip.payload-keys``; ``fedskip.train-keys`` names the tensors trained this round;
- reply (masked): Δ = trained − received for exactly ``fedskip.train-keys``, in that order.

So layer selection must be the same for every client in a round (top, bottom, interleaved,
explicit, rotating); ``importance`` (client-scored) is refused by the config
(:data:`fedskip.config.SECAGG_STRATEGIES`). Updates, not weights, are masked because
SecAgg+ quantizes within ±``clipping_range``: Δ is small, so it stays precise. With
``dp=client`` clients clip Δ to C before masking (so the range is C, nothing is cut) and weigh
1; the server adds the Gaussian noise to the unmasked mean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MessageType
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from fedskip.federation.validation import NUM_EXAMPLES
from fedskip.fl.messages import CLIENT_ID, numeric_metrics
from fedskip.privacy.client_level import clip_update

log = logging.getLogger(__name__)

PAYLOAD_KEYS = "fedskip.payload-keys"
TRAIN_KEYS = "fedskip.train-keys"


def _keys(text: Any) -> list[str]:
    return [k for k in str(text).split("\n") if k]


# ---------------------------------------------------------------------- client
class SecAggClient(NumPyClient):
    """Trains with fedskip's core and returns the masked-ready update of the train keys
    (evaluation is a plain message: :mod:`fedskip.fl.client_app`)."""

    def __init__(self, context: Context) -> None:
        from fedskip.fl.node import node_setup

        self.context = context
        self.runtime, self.data = node_setup(context)  # the same runtime as the node's evaluation
        self.cfg = self.runtime.cfg

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        from fedskip.fl.node import train_on_node

        payload, train_keys = _keys(config[PAYLOAD_KEYS]), _keys(config[TRAIN_KEYS])
        received = {
            k: torch.from_numpy(np.array(p, np.float32))
            for k, p in zip(payload, parameters, strict=True)
        }
        result = train_on_node(self.context, self.runtime, self.data, config, received)
        metrics = {
            NUM_EXAMPLES: result.num_examples,
            CLIENT_ID: self.data.client_id,
            **result.metrics,
        }
        update = {k: result.state[k].float().numpy() - received[k].numpy() for k in train_keys}
        return (
            secagg_update(update, train_keys, self.cfg),
            _weight(self.cfg, result.num_examples),
            numeric_metrics(metrics),
        )


def secagg_update(update: dict[str, np.ndarray], keys: list[str], cfg: Any) -> list[np.ndarray]:
    """The vector a client masks: Δ of ``keys`` in order, clipped to norm C under ``dp=client``."""
    if cfg.dp == "client":
        update, _ = clip_update(update, cfg.clip_norm)
    return [np.asarray(update[k], np.float32) for k in keys]


def _weight(cfg: Any, num_examples: int) -> int:
    """SecAgg+ weight: examples (FedAvg), or 1 under client-level DP (unweighted DP-FedAvg)."""
    return 1 if cfg.dp == "client" else int(num_examples)


def secagg_client_app(client_fn: Callable[[Context], Any] | None = None) -> ClientApp:
    """The legacy ClientApp behind ``secaggplus_mod`` (``client_fn`` defaults to fedskip's)."""
    make = client_fn or (lambda context: SecAggClient(context).to_client())
    return ClientApp(client_fn=make, mods=[secaggplus_mod])


def is_legacy_message(message: Message) -> bool:
    """A SecAgg+ stage or a legacy fit/evaluate instruction (what the SecAgg path sends)."""
    names = set(message.content.config_records) if message.has_content() else set()
    return RECORD_KEY_CONFIGS in names or bool(names & {"fitins.config", "evaluateins.config"})


def secagg_dispatch_mod(
    client_fn: Callable[[Context], Any] | None = None,
) -> Callable[..., Message]:
    """A mod for fedskip's ClientApp: legacy (SecAgg path) messages go to
    :func:`secagg_client_app`, everything else to the message-API handlers."""
    legacy = secagg_client_app(client_fn)

    def mod(
        message: Message, context: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        if message.metadata.message_type in (
            MessageType.TRAIN,
            MessageType.EVALUATE,
        ) and is_legacy_message(message):
            return legacy(message, context)
        return call_next(message, context)

    return mod
