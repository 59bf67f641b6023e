"""The concrete strategies: Flower's FedAvg, FedProx, FedAdam and FedYogi with layer skipping.

For FedAdam / FedYogi the server-optimizer update is Flower's own code: the strategy holds a
Flower ``FedAdam`` / ``FedYogi`` and hands it the per-tensor average of the accepted replies as
one pre-averaged reply, its state restricted to the tensors of this round
(:func:`fedskip.fl.flower_compat.fedopt_step`). The moments of every tensor are kept
between rounds, so with dynamic layer selection a block resumes its own moment estimates when it
is trained again, and they travel in checkpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.serverapp.strategy import FedAdam, FedProx, FedYogi
from flwr.serverapp.strategy.fedopt import FedOpt

from fedskip.config import Config
from fedskip.federation.round_types import Planner
from fedskip.fl.flower_compat import fedopt_step
from fedskip.fl.strategy.core import LayerSkipStrategy
from fedskip.fl.strategy.privacy import add_privacy
from fedskip.fl.strategy.wrapper import StrategyWrapper


class LayerSkipFedAvg(LayerSkipStrategy):
    """FedAvg (McMahan et al., 2017) over the trained tensors only."""


class LayerSkipFedProx(LayerSkipStrategy, FedProx):
    """FedProx (Li et al., 2020): FedAvg on the server; clients add ``mu/2 ||w - w_global||²``
    over their trainable tensors (``proximal-mu`` travels in the train config)."""


class _FlowerServerOptimizer(LayerSkipFedAvg):
    """FedAvg whose server step is a Flower FedOpt strategy's (held, not inherited)."""

    flower_class: type[FedOpt]

    def __init__(self, *, eta: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.optimizer = self.flower_class(eta=eta)
        self.moments: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})

    def server_step(
        self, server_round: int, previous: dict[str, np.ndarray], average: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return fedopt_step(self.optimizer, server_round, previous, average, self.moments)

    def state_dict(self) -> dict[str, Any]:
        m_all, v_all = self.moments
        state = super().state_dict()
        state["m_t"] = {k: v.copy() for k, v in m_all.items()}
        state["v_t"] = {k: v.copy() for k, v in v_all.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        m_all, v_all = self.moments
        m_all.clear()
        v_all.clear()
        m_all.update({k: np.asarray(v, dtype=np.float32) for k, v in state.get("m_t", {}).items()})
        v_all.update({k: np.asarray(v, dtype=np.float32) for k, v in state.get("v_t", {}).items()})


class LayerSkipFedAdam(_FlowerServerOptimizer):
    """FedAdam (Reddi et al., 2021) with the server step on the trained tensors only."""

    flower_class = FedAdam


class LayerSkipFedYogi(_FlowerServerOptimizer):
    """FedYogi (Reddi et al., 2021) with the server step on the trained tensors only."""

    flower_class = FedYogi


def build_strategy(
    cfg: Config,
    *,
    planner: Planner,
    all_keys: Iterable[str],
    num_clients: int,
    base: Mapping[str, np.ndarray] | None = None,
    client_evaluation: bool = True,
) -> LayerSkipStrategy | StrategyWrapper:
    """The fully configured strategy for ``cfg`` (nothing is set on it afterwards): FedProx for
    ``method=fedprox``, FedAdam / FedYogi for ``server-optimizer=adam|yogi``, FedAvg otherwise,
    wrapped for ``dp`` (:func:`add_privacy`).

    ``all_keys``: every parameter name of the model; ``num_clients``: SuperNodes to wait for;
    ``base``: the base model's fp32 values of the tensors that may travel
    (:func:`fedskip.fl.wire_compression.base_values`), needed when ``cfg.wire_compression``
    compresses; ``client_evaluation``: False when the server scores the sites itself, so the
    clients are not asked to evaluate (``eval-clients=false`` asks none either). A fresh run token
    is drawn when the sites keep state across rounds (``personalize`` or compressed replies'
    error feedback); a resumed run restores its own from the checkpoint.
    """
    compression = cfg.wire_compression
    if compression != "none" and base is None:
        raise ValueError(f"wire-compression={compression} needs the base values (base=...)")
    keeps_site_state = cfg.personalize != "none" or compression != "none"
    common: dict[str, Any] = {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": 1.0,
        # SecAgg+ masks need at least two clients in a round
        "min_train_nodes": max(2, cfg.min_replies) if cfg.secagg else cfg.min_replies,
        "min_evaluate_nodes": 1,
        "min_available_nodes": num_clients,
        "planner": planner,
        "all_keys": all_keys,
        "min_replies": cfg.min_replies,
        "seed": cfg.seed,
        "proximal_mu_clients": cfg.proximal_mu if cfg.method_kind.proximal else 0.0,
        "client_evaluation": cfg.eval_clients and client_evaluation,
        "compression": compression,
        "base": base,
        "run_token": uuid.uuid4().hex[:12] if keeps_site_state else "",
    }
    strategy: LayerSkipStrategy
    if cfg.server_optimizer == "adam":
        strategy = LayerSkipFedAdam(eta=cfg.server_lr, **common)
    elif cfg.server_optimizer == "yogi":
        strategy = LayerSkipFedYogi(eta=cfg.server_lr, **common)
    elif cfg.method_kind.proximal:
        strategy = LayerSkipFedProx(proximal_mu=cfg.proximal_mu, **common)
    else:
        strategy = LayerSkipFedAvg(**common)
    return add_privacy(strategy, cfg)
