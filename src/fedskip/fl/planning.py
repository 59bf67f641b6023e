"""Which tensors each method trains and exchanges — one code path for server and clients.

- ``layerskip`` / ``fedprox``: the blocks chosen by the layer strategy (+ head, + final norm when
  the top block is chosen), via :func:`fedskip.pipeline.apply_plan`; with ``lora-rank`` > 0 the
  chosen blocks get LoRA adapters instead of full training (static strategies only);
- ``fedavg``: every parameter (full fine-tuning, the baseline layer skipping is compared with);
- ``lora``: peft LoRA adapters on every block's linear layers plus the task head (FedAvg over
  adapters).

:class:`LayerPlanner` is the server's :class:`~fedskip.fl.rounds.Planner`: it turns a round (and,
for ``layer-strategy=importance``, the clients' averaged layer scores) into block indices and
tensor names. Clients receive the block indices and call :func:`set_trainable` on their own copy
of the model, so both sides derive the tensor names with the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.fl.rounds import RoundPlan

log = logging.getLogger(__name__)

DEFAULT_LORA_RANK = 8
"""LoRA rank of ``method=lora`` when ``lora-rank`` is 0."""


@dataclass
class ModelBundle:
    """A task model with its tokenizer and block stack (discovered before any LoRA wrapping)."""

    model: nn.Module
    tokenizer: Any
    stack: Any
    lora: bool = False
    full_parameters: int = 0
    """Parameters of the plain model (what full-model FedAvg would exchange per direction)."""


def uses_lora(cfg: Config) -> bool:
    return cfg.method == "lora" or (cfg.method in ("layerskip", "fedprox") and cfg.lora_rank > 0)


def is_full(cfg: Config, stack: Any) -> bool:
    from fedskip.pipeline import is_full_finetune

    return not uses_lora(cfg) and is_full_finetune(cfg, stack)


def selector_of(cfg: Config) -> Any:
    from fedskip.selection import get_selector

    return get_selector(cfg.layer_strategy)


def static_layers(cfg: Config, stack: Any) -> list[int] | None:
    """The blocks of every round when they do not change, else None (rotating / importance)."""
    if cfg.method == "lora" or is_full(cfg, stack):
        return list(range(stack.num_blocks))
    selector = selector_of(cfg)
    if selector.dynamic or selector.needs_scores:
        return None
    from fedskip.pipeline import layer_plan

    return layer_plan(cfg, stack, 1)


def load_bundle(cfg: Config, prepared: Any) -> ModelBundle:
    """The pretrained model with its (seeded) task head; LoRA-wrapped when the method uses it.

    The layer plan is applied later, per round (:func:`set_trainable`).
    """
    from fedskip.pipeline import build_model

    # block 0 exists in every model; the real plan is applied per round by set_trainable
    model, tokenizer, stack = build_model(cfg, prepared, selected=[0])
    from fedskip.models.freeze import count_parameters

    bundle = ModelBundle(model, tokenizer, stack, full_parameters=count_parameters(model)[0])
    if uses_lora(cfg):
        blocks = static_layers(cfg, stack)
        if blocks is None:
            raise ConfigError(
                "config key 'lora-rank': LoRA inside selected blocks needs a static "
                "layer-strategy (top, bottom, interleaved, explicit)"
            )
        bundle.model = wrap_lora(cfg, model, stack, blocks)
        bundle.lora = True
    return bundle


def wrap_lora(cfg: Config, model: nn.Module, stack: Any, blocks: list[int]) -> nn.Module:
    """peft LoRA inside ``blocks`` with the config's rank, alpha, targets, frozen A, final norm
    and seed (see :func:`fedskip.models.lora.apply_lora_to_selected`)."""
    # [lora helper] one implementation shared with `fedskip comm` and the LoRA tests
    from fedskip.models.lora import apply_lora_to_selected

    wrapped, _ = apply_lora_to_selected(
        model,
        stack,
        blocks,
        rank=cfg.lora_rank or DEFAULT_LORA_RANK,
        alpha=cfg.lora_alpha,
        targets=cfg.lora_targets,
        freeze_a=cfg.lora_freeze_a,
        train_final_norm=cfg.train_final_norm,
        seed=cfg.seed,
    )
    return wrapped  # type: ignore[no-any-return]


def set_trainable(bundle: ModelBundle, cfg: Config, layers: list[int]) -> list[str]:
    """Apply this round's plan to ``bundle.model``; returns the sorted trainable tensor names."""
    if bundle.lora:
        # [lora helper] adapters (B only with lora-freeze-a), head copy, final norm with the top block
        from fedskip.models.lora import set_lora_trainable

        blocks = static_layers(cfg, bundle.stack) or layers
        return set_lora_trainable(
            bundle.model,
            bundle.stack,
            blocks,
            freeze_a=cfg.lora_freeze_a,
            train_final_norm=cfg.train_final_norm,
        )
    from fedskip.pipeline import apply_plan

    return sorted(apply_plan(bundle.model, bundle.stack, layers, cfg))


def trainable_names(bundle: ModelBundle, cfg: Config, layers: list[int]) -> list[str]:
    """What :func:`set_trainable` would make trainable, without changing the model."""
    if bundle.lora or is_full(cfg, bundle.stack):
        saved = {n: p.requires_grad for n, p in bundle.model.named_parameters()}
        names = set_trainable(bundle, cfg, layers)
        for name, param in bundle.model.named_parameters():
            param.requires_grad_(saved[name])
        return names
    from fedskip.models.freeze import trainable_names_for

    return trainable_names_for(
        bundle.model, bundle.stack, layers, train_final_norm=cfg.train_final_norm
    )


class LayerPlanner:
    """The server's per-round plan (see the module docstring)."""

    def __init__(self, cfg: Config, bundle: ModelBundle) -> None:
        self.cfg = cfg
        self.bundle = bundle
        self.static = static_layers(cfg, bundle.stack)
        self.selector = None if self.static is not None else selector_of(cfg)
        self.scores: list[float] | None = None
        self.history: dict[int, list[int]] = {}

    @property
    def num_blocks(self) -> int:
        return int(self.bundle.stack.num_blocks)

    def candidate_keys(self) -> list[str]:
        """Every tensor any round may train: the global state the server keeps."""
        layers = self.static if self.static is not None else list(range(self.num_blocks))
        return trainable_names(self.bundle, self.cfg, layers)

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
        shown = layers if not (self.bundle.lora and self.cfg.method == "lora") else []
        return RoundPlan(layers=shown, train_keys=trainable_names(self.bundle, self.cfg, layers))

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores, "history": {str(k): v for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = state.get("scores")
        self.history = {int(k): list(v) for k, v in state.get("history", {}).items()}
