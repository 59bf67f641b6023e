"""The concrete strategies: Flower's FedAvg, FedProx, FedAdam and FedYogi with layer skipping.

For FedAdam / FedYogi the server-optimizer update is Flower's own code: the strategy holds a
Flower ``FedAdam`` / ``FedYogi`` and hands it the per-tensor average of the accepted replies as
one pre-averaged reply, its state restricted to the tensors of this round
(:func:`fedskip.fl.flower_compat.fedopt_step`). The moments of every tensor are kept
between rounds, so with dynamic layer selection a block resumes its own moment estimates when it
is trained again, and they travel in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    cfg: Config, *, planner: Planner, all_keys: Iterable[str], num_clients: int
) -> LayerSkipStrategy | StrategyWrapper:
    """The strategy for ``cfg``: FedProx for ``method=fedprox``, FedAdam / FedYogi for
    ``server-optimizer=adam|yogi``, FedAvg otherwise, wrapped for ``dp`` (:func:`add_privacy`);
    ``num_clients``: SuperNodes to wait for."""
    common: dict[str, Any] = {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": 1.0,
        # SecAgg+ masks need at least two clients in a round
        "min_train_nodes": max(2, cfg.min_replies) if cfg.secagg else cfg.min_replies,
        "min_evaluate_nodes": 1,
        "min_available_nodes": num_clients,
    }
    strategy: LayerSkipStrategy
    if cfg.server_optimizer == "adam":
        strategy = LayerSkipFedAdam(eta=cfg.server_lr, **common)
    elif cfg.server_optimizer == "yogi":
        strategy = LayerSkipFedYogi(eta=cfg.server_lr, **common)
    elif cfg.method == "fedprox":
        strategy = LayerSkipFedProx(proximal_mu=cfg.proximal_mu, **common)
    else:
        strategy = LayerSkipFedAvg(**common)
    if not cfg.eval_clients:  # set after construction: Flower warns when it is passed as 0
        strategy.fraction_evaluate, strategy.min_evaluate_nodes = 0.0, 0
    strategy.setup_layerskip(
        planner=planner,
        all_keys=all_keys,
        min_replies=cfg.min_replies,
        seed=cfg.seed,
        proximal_mu=cfg.proximal_mu if cfg.method == "fedprox" else 0.0,
    )
    return add_privacy(strategy, cfg)
