"""The concrete strategies: Flower's FedAvg, FedProx, FedAdam and FedYogi with layer skipping.

For FedAdam / FedYogi the server-optimizer update is Flower's own code: the per-tensor average
of the accepted replies is handed to the Flower class's ``aggregate_train`` as one pre-averaged
reply (weight 1, so Flower's averaging leaves it unchanged), with Flower's ``current_arrays``,
``m_t`` and ``v_t`` restricted to the tensors of this round. The moments of every tensor are kept
between rounds, so with dynamic layer selection a block resumes its own moment estimates when it
is trained again, and they travel in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedYogi

from fedskip.config import Config
from fedskip.fl import messages as M
from fedskip.fl.privacy import add_privacy
from fedskip.fl.rounds import Planner
from fedskip.fl.strategy import LayerSkipMixin
from fedskip.fl.validation import NUM_EXAMPLES


class LayerSkipFedAvg(LayerSkipMixin, FedAvg):
    """FedAvg (McMahan et al., 2017) over the trained tensors only."""


class LayerSkipFedProx(LayerSkipMixin, FedProx):
    """FedProx (Li et al., 2020): FedAvg on the server; clients add ``mu/2 ||w - w_global||²``
    over their trainable tensors (``proximal-mu`` travels in the train config)."""


class _FlowerServerOptimizer(LayerSkipMixin):
    """Applies the Flower FedOpt subclass's update to this round's averaged tensors."""

    current_arrays: dict[str, np.ndarray] | None
    m_t: dict[str, np.ndarray] | None
    v_t: dict[str, np.ndarray] | None
    _flower_class: type[FedAvg]

    def _moments(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        if not hasattr(self, "_m_all"):
            self._m_all: dict[str, np.ndarray] = {}
            self._v_all: dict[str, np.ndarray] = {}
        return self._m_all, self._v_all

    def server_step(
        self, server_round: int, previous: dict[str, np.ndarray], average: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        m_all, v_all = self._moments()
        keys = list(average)
        self.current_arrays = {k: previous[k] for k in keys}
        self.m_t = {k: m_all.get(k, np.zeros_like(previous[k])) for k in keys}
        self.v_t = {k: v_all.get(k, np.zeros_like(previous[k])) for k in keys}
        content = RecordDict(
            {
                self.arrayrecord_key: M.to_array_record(average),
                "metrics": MetricRecord({NUM_EXAMPLES: 1}),
            }
        )
        reply = Message(content=content, dst_node_id=0, message_type=MessageType.TRAIN)
        stepped, _ = self._flower_class.aggregate_train(self, server_round, [reply])  # type: ignore[arg-type]
        if stepped is None:  # pragma: no cover - Flower returns None only without replies
            raise RuntimeError("Flower's server optimizer returned no arrays")
        m_all.update(self.m_t or {})
        v_all.update(self.v_t or {})
        return {k: np.asarray(v, dtype=np.float32) for k, v in M.to_numpy(stepped).items()}

    def state_dict(self) -> dict[str, Any]:
        m_all, v_all = self._moments()
        state = super().state_dict()
        state["m_t"] = {k: v.copy() for k, v in m_all.items()}
        state["v_t"] = {k: v.copy() for k, v in v_all.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        m_all, v_all = self._moments()
        m_all.clear()
        v_all.clear()
        m_all.update({k: np.asarray(v, dtype=np.float32) for k, v in state.get("m_t", {}).items()})
        v_all.update({k: np.asarray(v, dtype=np.float32) for k, v in state.get("v_t", {}).items()})


class LayerSkipFedAdam(_FlowerServerOptimizer, FedAdam):
    """FedAdam (Reddi et al., 2021) with the server step on the trained tensors only."""

    _flower_class = FedAdam


class LayerSkipFedYogi(_FlowerServerOptimizer, FedYogi):
    """FedYogi (Reddi et al., 2021) with the server step on the trained tensors only."""

    _flower_class = FedYogi


def build_strategy(
    cfg: Config, *, planner: Planner, all_keys: Iterable[str], num_clients: int
) -> LayerSkipMixin:
    """The strategy for ``cfg``: FedProx for ``method=fedprox``, FedAdam / FedYogi for
    ``server-optimizer=adam|yogi``, FedAvg otherwise; ``num_clients``: SuperNodes to wait for."""
    common: dict[str, Any] = {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": 1.0,
        "min_train_nodes": cfg.min_replies,
        "min_evaluate_nodes": 1,
        "min_available_nodes": num_clients,
    }
    strategy: LayerSkipMixin
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
    return add_privacy(strategy, cfg)  # [privacy] max-ε metrics (dp=sample) / DP-FedAvg (dp=client)
