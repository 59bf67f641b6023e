"""Layer skipping: train (and exchange) only the selected blocks plus the task head.

Frozen parameters get ``requires_grad=False``. Because the embeddings are frozen, no activation
below the lowest trainable block requires grad, so autograd builds no graph there: backward stops
at the lowest selected block (compute and activation memory saved), and the optimizer, built
elsewhere from parameters with ``requires_grad``, holds no state for frozen weights. Parameters
shared with an embedding (tied weights) always stay frozen.

The exchanged state (:func:`trainable_state`) is a name → detached CPU fp32 tensor mapping; its
keys are exactly the trainable parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fedskip.errors import ConfigError, ModelError
from fedskip.models.layers import LayerStack


def validate_selected(stack: LayerStack, selected: Sequence[int]) -> list[int]:
    """The sorted distinct block indices of ``selected``; ConfigError when none or out of range."""
    chosen = sorted(set(int(i) for i in selected))
    if not chosen:
        raise ConfigError("config key 'layers': at least one block must be selected")
    bad = [i for i in chosen if not 0 <= i < stack.num_blocks]
    if bad:
        raise ConfigError(
            f"config key 'layer-ids': block(s) {bad} out of range 0..{stack.num_blocks - 1} for this model"
        )
    return chosen


def _embedding_param_ids(model: nn.Module, stack: LayerStack) -> set[int]:
    """ids of every parameter reachable under an embedding prefix (tied copies included)."""
    return {
        id(p)
        for name, p in model.named_parameters(remove_duplicate=False)
        if stack.is_embedding(name)
    }


def trainable_names_for(
    model: nn.Module, stack: LayerStack, selected: Sequence[int], *, train_final_norm: bool = True
) -> list[str]:
    """Names (sorted) that layer skipping trains for ``selected`` blocks, without changing the model."""
    chosen = set(validate_selected(stack, selected))
    with_norm = train_final_norm and (stack.num_blocks - 1) in chosen
    tied = _embedding_param_ids(model, stack)
    names = []
    for name, param in model.named_parameters():
        if id(param) in tied:
            continue
        block = stack.block_of(name)
        if (
            (block is not None and block in chosen)
            or stack.is_head(name)
            or (with_norm and stack.is_final_norm(name))
        ):
            names.append(name)
    return sorted(names)


def apply_layer_skip(
    model: nn.Module, stack: LayerStack, selected: Sequence[int], *, train_final_norm: bool = True
) -> list[str]:
    """Make only ``selected`` blocks + task head (+ final norm when ``train_final_norm`` and the
    top block is selected) trainable; freeze everything else. Returns the sorted trainable names."""
    names = set(trainable_names_for(model, stack, selected, train_final_norm=train_final_norm))
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        if name not in names:
            param.grad = None
    return sorted(names)


def apply_full_finetune(model: nn.Module, stack: LayerStack | None = None) -> list[str]:
    """Full fine-tuning (the FedAvg baseline): every parameter trainable. Returns sorted names."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(True)
        names.append(name)
    return sorted(names)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU fp32 copies of the trainable parameters, by name (what a client sends)."""
    return {
        name: param.detach().to(device="cpu", dtype=torch.float32).clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, strict_keys: bool = True
) -> list[str]:
    """Copy ``state`` into the model's parameters (cast to each parameter's dtype and device).

    With ``strict_keys`` the keys must be exactly the trainable parameter names; otherwise they
    must be parameter names (a subset is fine). Unknown names and shape mismatches always raise
    :class:`ModelError`. Returns the sorted names loaded.
    """
    params = dict(model.named_parameters())
    unknown = sorted(k for k in state if k not in params)
    if unknown:
        raise ModelError(
            f"update has {len(unknown)} parameter(s) unknown to this model, e.g. {unknown[0]}"
        )
    if strict_keys:
        expected = {n for n, p in params.items() if p.requires_grad}
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected)
        if missing or extra:
            example = (missing or extra)[0]
            raise ModelError(
                f"update keys differ from the trainable parameters: {len(missing)} missing, "
                f"{len(extra)} frozen, e.g. {example}; do client and server select the same layers?"
            )
    with torch.no_grad():
        for name, value in state.items():
            param = params[name]
            tensor = torch.as_tensor(value)
            if tuple(tensor.shape) != tuple(param.shape):
                raise ModelError(
                    f"update for {name} has shape {tuple(tensor.shape)}, model expects {tuple(param.shape)}"
                )
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))
    return sorted(state)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; tied parameters count once."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return total, trainable


def frozen_modules_eval(model: nn.Module) -> list[str]:
    """Put every module whose parameters are all frozen in eval mode (no dropout there), leaving
    the others' mode alone; returns the names of the modules switched.

    Under layer skipping the frozen embeddings and blocks then compute exactly what they compute
    at inference (and what the frozen-prefix activation cache stores), while the trained blocks
    and the head keep their dropout. Parameter-free modules inside a trained module (its dropout)
    stay in train mode; a parameter-free top-level module (the head's dropout) too."""
    switched: list[str] = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params) and module.training:
            module.eval()
            switched.append(name)
    return switched
