"""What a run trains: one builder for every method (centralized, local-only, federated).

Four kinds of trainability, decided by the config and the model's block stack alone (what each
method trains is its row's ``trains`` in :mod:`fedskip.methods`):

- **layer skip** (``trains=blocks``: ``layerskip`` / ``fedprox`` / ``centralized`` / ``local``):
  the blocks chosen by the layer strategy, plus the task head and, when the top block is chosen,
  the final norm;
- **full fine-tuning**: every parameter — ``trains=all`` (``method=fedavg``), or ``layers`` equal
  to the number of blocks (not with ``layer-strategy=explicit``);
- **LoRA in every block** (``trains=lora``: ``method=lora``): peft adapters on every block's
  linear layers plus the head;
- **LoRA inside the selected blocks** (``lora-rank`` > 0 with a ``trains=blocks`` method):
  adapters replace full training of the chosen blocks (static layer strategies only: the config
  refuses the others).

:func:`load_bundle` loads the model with its seeded head (LoRA-wrapped when the method uses
adapters); :func:`set_trainable` applies one round's blocks and returns the trainable tensor
names — the server derives the exchanged names with the same code (:func:`trainable_names`).
:func:`build_trainable` is the whole builder for runs without rounds: load, plan round 1
(importance scores from the run's own training documents when the strategy needs them), apply.

Personalization (``personalize``): :func:`personal_names` picks, among the trainable tensors,
those a site trains and keeps for itself (the task head, the norms inside the trained blocks);
:func:`shared_names` is the rest — what the server plans, sends, validates and aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from fedskip.config import Config
from fedskip.methods import ALL, LORA
from fedskip.models.layers import LayerStack
from fedskip.pipeline import Doc, Prepared

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_LORA_RANK = 8
"""LoRA rank of ``method=lora`` when ``lora-rank`` is 0."""


@dataclass
class ModelBundle:
    """A task model with its tokenizer and block stack (discovered before any LoRA wrapping)."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    stack: LayerStack
    lora: bool = False
    full_parameters: int = 0
    """Parameters of the plain model (what full-model FedAvg would exchange per direction)."""


def uses_lora(cfg: Config) -> bool:
    """Whether ``cfg`` trains LoRA adapters (every block, or inside the selected blocks)."""
    kind = cfg.method_kind
    return kind.trains == LORA or (kind.lora_in_blocks and cfg.lora_rank > 0)


def is_full_finetune(cfg: Config, stack: LayerStack) -> bool:
    """Every block is trained: a full-model method (FedAvg), or ``layers`` = every block."""
    if cfg.method_kind.trains == ALL:
        return True
    return cfg.layer_strategy != "explicit" and cfg.layers == stack.num_blocks


def is_full(cfg: Config, stack: LayerStack) -> bool:
    """Full fine-tuning of every parameter (no adapters)."""
    return not uses_lora(cfg) and is_full_finetune(cfg, stack)


def layer_plan(
    cfg: Config, stack: LayerStack, round: int = 1, *, scores: Sequence[float] | None = None
) -> list[int]:
    """Block indices trained in ``round`` (1-based) by the configured strategy; all blocks for
    full fine-tuning. ``scores`` are per-block importances for ``layer-strategy=importance``."""
    if is_full_finetune(cfg, stack):
        return list(range(stack.num_blocks))
    from fedskip.selection import get_selector

    return get_selector(cfg.layer_strategy).select(
        stack.num_blocks,
        cfg.layers,
        round=round,
        ids=cfg.layer_id_list(),
        scores=scores,
        every=cfg.layer_every,
    )


def static_layers(cfg: Config, stack: LayerStack) -> list[int] | None:
    """The blocks of every round when they do not change, else None (rotating / importance)."""
    if cfg.method_kind.trains == LORA or is_full(cfg, stack):
        return list(range(stack.num_blocks))
    from fedskip.selection import get_selector

    selector = get_selector(cfg.layer_strategy)
    if selector.dynamic or selector.needs_scores:
        return None
    return layer_plan(cfg, stack, 1)


def needs_scores(cfg: Config, stack: LayerStack) -> bool:
    """Whether the first plan needs per-block importance scores."""
    return cfg.layer_strategy == "importance" and not is_full_finetune(cfg, stack)


# --------------------------------------------------------------------------- building
def load_bundle(cfg: Config, prepared: Prepared) -> ModelBundle:
    """The pretrained model with its (seeded) task head; LoRA-wrapped when the method uses it.

    The layer plan is applied later, per round (:func:`set_trainable`); until then block 0 (which
    every model has) is marked trainable.
    """
    from fedskip.models.freeze import count_parameters
    from fedskip.models.layers import discover_layers
    from fedskip.models.loading import load_model

    model, tokenizer = load_model(
        cfg.model,
        task=prepared.task,
        labels=prepared.label_list,
        multi_label=prepared.multi_label,
        dtype=cfg.dtype,
        device=cfg.device,
        seed=cfg.seed,
        init=cfg.model_init,
        path=cfg.model_path,
    )
    stack = discover_layers(model)
    bundle = ModelBundle(model, tokenizer, stack, full_parameters=count_parameters(model)[0])
    _apply_plain(bundle, cfg, [0])
    if uses_lora(cfg):
        blocks = static_layers(cfg, stack)
        assert blocks is not None, "the config refuses LoRA with a dynamic layer-strategy"
        bundle.model = _wrap_lora(cfg, model, stack, blocks)
        bundle.lora = True
    return bundle


def _wrap_lora(cfg: Config, model: nn.Module, stack: LayerStack, blocks: list[int]) -> nn.Module:
    """peft LoRA inside ``blocks`` with the config's rank, alpha, targets, frozen A, final norm
    and seed (see :func:`fedskip.models.lora.apply_lora_to_selected`)."""
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
    return wrapped


def _apply_plain(bundle: ModelBundle, cfg: Config, layers: Sequence[int]) -> list[str]:
    from fedskip.models.freeze import apply_full_finetune, apply_layer_skip

    if is_full_finetune(cfg, bundle.stack):
        return apply_full_finetune(bundle.model, bundle.stack)
    return apply_layer_skip(
        bundle.model, bundle.stack, layers, train_final_norm=cfg.train_final_norm
    )


def set_trainable(bundle: ModelBundle, cfg: Config, layers: Sequence[int]) -> list[str]:
    """Apply this round's plan to ``bundle.model``; returns the sorted trainable tensor names."""
    if bundle.lora:
        # adapters (B only with lora-freeze-a), head copy, final norm with the top block
        from fedskip.models.lora import set_lora_trainable

        blocks = static_layers(cfg, bundle.stack) or list(layers)
        return set_lora_trainable(
            bundle.model,
            bundle.stack,
            blocks,
            freeze_a=cfg.lora_freeze_a,
            train_final_norm=cfg.train_final_norm,
        )
    return sorted(_apply_plain(bundle, cfg, layers))


def trainable_names(bundle: ModelBundle, cfg: Config, layers: Sequence[int]) -> list[str]:
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


def personal_names(bundle: ModelBundle, cfg: Config, names: Sequence[str]) -> list[str]:
    """The tensors of ``names`` that stay at the site under ``personalize``: ``head`` = the task
    head's parameters (LoRA: its trained copy), ``norms`` = LayerNorm / RMSNorm parameters among
    ``names`` (the norms inside the trained blocks, and the final norm when it is trained)."""
    if cfg.personalize == "none":
        return []
    from fedskip.models.layers import is_norm_module
    from fedskip.models.lora import PEFT_PREFIX

    parts = set(cfg.personalize.split("+"))
    personal = []
    for name in names:
        plain = name.removeprefix(PEFT_PREFIX) if bundle.lora else name
        owner = bundle.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else None
        if ("head" in parts and bundle.stack.is_head(plain)) or (
            "norms" in parts and owner is not None and is_norm_module(owner)
        ):
            personal.append(name)
    return sorted(personal)


def shared_names(bundle: ModelBundle, cfg: Config, names: Sequence[str]) -> list[str]:
    """The tensors of ``names`` the federation shares (``names`` minus :func:`personal_names`)."""
    personal = set(personal_names(bundle, cfg, names))
    return sorted(n for n in names if n not in personal)


def trained_blocks(bundle: ModelBundle) -> list[int]:
    """Indices of the blocks that hold a trainable parameter (an adapter, with LoRA)."""
    from fedskip.models.lora import PEFT_PREFIX

    blocks = set()
    for name, param in bundle.model.named_parameters():
        if param.requires_grad:
            plain = name.removeprefix(PEFT_PREFIX) if bundle.lora else name
            blocks.add(bundle.stack.block_of(plain))
    return sorted(b for b in blocks if b is not None)


def first_layers(
    cfg: Config, bundle: ModelBundle, prepared: Prepared, docs: Sequence[Doc]
) -> list[int]:
    """The blocks of round 1 (or of a run without rounds); importance scores, when the strategy
    needs them, come from ``importance-batches`` batches of ``docs``."""
    scores = None
    if needs_scores(cfg, bundle.stack):
        from fedskip.pipeline import importance_scores

        scores = importance_scores(
            cfg, bundle.model, bundle.stack, bundle.tokenizer, prepared, docs
        )
    return layer_plan(cfg, bundle.stack, 1, scores=scores)


def build_trainable(
    cfg: Config, prepared: Prepared, docs: Sequence[Doc] | None = None
) -> tuple[ModelBundle, list[int]]:
    """The model of a run without rounds (centralized, one local-only site) with its plan
    applied: ``(bundle, blocks)``. ``docs`` (default: every client's training documents) feed
    the importance scores."""
    bundle = load_bundle(cfg, prepared)
    layers = first_layers(cfg, bundle, prepared, prepared.train_docs if docs is None else docs)
    set_trainable(bundle, cfg, layers)
    return bundle, layers
