"""What a SuperNode brings to every message, read from its Flower ``Context``: the run config
as this node uses it, its runtime and data, and its training step.

Both training exchanges — plain messages (:func:`fedskip.fl.client_app.train`) and SecAgg+
(:class:`fedskip.fl.secagg.SecAggClient`) — and the evaluation, identification and scoring
handlers set up through :func:`node_setup`, so a node started with ``model-path`` trains and
evaluates its own copy of the model on either path and keeps one runtime for both; both train
through :func:`train_on_node`, the one step (:func:`fedskip.federation.client.train_step`) with the
node's DP-SGD accountant and personal tensors kept in ``Context.state``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import Context

from fedskip.config import Config
from fedskip.federation.client import (
    ClientData,
    ClientResult,
    ClientRuntime,
    TrainOrder,
    client_data_from_node_config,
    runtime_for,
    site_config,
    train_step,
)
from fedskip.fl.dpsgd_node import dpsgd_for, dpsgd_metrics, known_dp_steps, save_dpsgd
from fedskip.fl.messages import PROXIMAL_MU, SERVER_ROUND, TRAIN_LAYERS
from fedskip.fl.personal import site_state


def node_setup(context: Context) -> tuple[ClientRuntime, ClientData]:
    """This node's runtime (the run config with its node config applied: ``model-path``
    replaces ``model``) and its data."""
    cfg = site_config(Config.from_mapping(context.run_config), context.node_config)
    runtime = runtime_for(cfg)
    return runtime, client_data_from_node_config(runtime, context.node_config)


def train_order(config: Mapping[str, Any], client_id: int) -> TrainOrder:
    """The round's instruction from a train config: ``train-layers`` is a list of ints in a
    message, its JSON text on the SecAgg+ path (legacy config records hold no lists)."""
    layers: Any = config.get(TRAIN_LAYERS, [])
    if isinstance(layers, str):
        layers = json.loads(layers) if layers else []
    return TrainOrder(
        server_round=int(config[SERVER_ROUND]),
        layers=[int(i) for i in layers],
        proximal_mu=float(config.get(PROXIMAL_MU, 0.0)),
        dp_steps_done=known_dp_steps(config, client_id),
    )


def train_on_node(
    context: Context,
    runtime: ClientRuntime,
    data: ClientData,
    config: Mapping[str, Any],
    received: Mapping[str, torch.Tensor],
) -> ClientResult:
    """Train one round on this node: the DP-SGD accountant resumes from ``context.state`` (so
    ε composes over every round the node trained in) and is kept there; ``personalize``: the
    site's personal tensors are loaded and kept (:mod:`fedskip.fl.personal`)."""
    cfg = runtime.cfg
    order = train_order(config, data.client_id)
    dp = dpsgd_for(context, cfg, known_steps=order.dp_steps_done)  # [privacy]
    result = train_step(
        runtime,
        data,
        received,
        order,
        privacy=dp,
        privacy_metrics=lambda hook: dpsgd_metrics(hook, step_report=cfg.dp_step_report),
        personal=site_state(cfg, context, data.name, config),  # [personalize] never sent
    )
    if dp is not None:  # [privacy] keep composing next round
        save_dpsgd(context, dp)
    return result
