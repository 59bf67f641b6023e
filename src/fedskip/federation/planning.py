"""The server's per-round plan: which blocks, and so which tensors, each round trains.

What a method trains is decided in :mod:`fedskip.trainability` (one builder for every method);
:class:`LayerPlanner` is the server's :class:`~fedskip.federation.round_types.Planner` on top of it: it turns a
round (and, for ``layer-strategy=importance``, the clients' averaged layer scores) into block
indices and tensor names. Clients receive the block indices and call
:func:`~fedskip.trainability.set_trainable` on their own copy of the model, so both sides derive
the tensor names with the same code.
"""

from __future__ import annotations

import logging
from typing import Any

from fedskip.config import Config
from fedskip.federation.round_types import RoundPlan
from fedskip.methods import LORA
from fedskip.selection import get_selector
from fedskip.trainability import ModelBundle, shared_names, static_layers, trainable_names

log = logging.getLogger(__name__)


class LayerPlanner:
    """The server's per-round plan (see the module docstring)."""

    def __init__(self, cfg: Config, bundle: ModelBundle) -> None:
        self.cfg = cfg
        self.bundle = bundle
        self.static = static_layers(cfg, bundle.stack)
        self.selector = None if self.static is not None else get_selector(cfg.layer_strategy)
        self.scores: list[float] | None = None
        self.history: dict[int, list[int]] = {}

    @property
    def num_blocks(self) -> int:
        return int(self.bundle.stack.num_blocks)

    def candidate_keys(self) -> list[str]:
        """Every shared tensor any round may train: the global state the server keeps (a site's
        personal tensors, ``personalize``, are never part of it)."""
        layers = self.static if self.static is not None else list(range(self.num_blocks))
        return self.train_keys(layers)

    def train_keys(self, layers: list[int]) -> list[str]:
        """The shared tensors trained with ``layers`` (personal ones stay at the sites)."""
        return shared_names(self.bundle, self.cfg, trainable_names(self.bundle, self.cfg, layers))

    def needs_scores(self, server_round: int) -> bool:
        if self.selector is None or not self.selector.needs_scores:
            return False
        every = self.cfg.rescore_every
        return self.scores is None or (every > 0 and (server_round - 1) % every == 0)

    def layers_for(self, server_round: int) -> list[int]:
        if self.static is not None:
            return list(self.static)
        assert self.selector is not None
        if self.selector.needs_scores and self.scores is None:
            previous = self.history.get(server_round - 1)
            if previous is None:
                raise RuntimeError("layer-strategy=importance: no client returned layer scores")
            log.warning(
                "round %d: no fresh layer scores; keeping blocks %s", server_round, previous
            )
            return list(previous)
        return self.selector.select(
            self.num_blocks,
            self.cfg.layers,
            round=server_round,
            ids=self.cfg.layer_id_list(),
            scores=self.scores,
            every=self.cfg.layer_every,
        )

    def plan(self, server_round: int, scores: list[float] | None) -> RoundPlan:
        if scores is not None:
            self.scores = list(scores)
        layers = self.layers_for(server_round)
        self.history[server_round] = layers
        every_block_lora = self.bundle.lora and self.cfg.method_kind.trains == LORA
        shown = [] if every_block_lora else layers
        return RoundPlan(layers=shown, train_keys=self.train_keys(layers))

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores, "history": {str(k): v for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = state.get("scores")
        self.history = {int(k): list(v) for k, v in state.get("history", {}).items()}
