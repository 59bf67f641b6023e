"""The Opacus side of DP-SGD: per-example losses and which modules can get per-example
gradients (see :mod:`fedskip.privacy.dpsgd`; the unit-level loader is in
:mod:`fedskip.privacy.unit_batches`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fedskip.errors import ModelError


def per_example_mean_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over examples of each example's own loss (a function of that example alone).

    Token classification (logits ``[B, T, C]``, labels ``[B, T]`` with -100 = ignore): an
    example's loss is its mean cross-entropy over its labelled tokens (0 if it has none).
    Multi-label (float labels): mean BCE over the labels. Otherwise cross-entropy per example.
    """
    if labels.dtype.is_floating_point:
        per = (
            nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels.float(), reduction="none"
            )
            .flatten(1)
            .mean(1)
        )
    elif logits.dim() == 3:
        ce = nn.functional.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        per = ce.sum(1) / (labels != -100).sum(1).clamp(min=1)
    else:
        per = nn.functional.cross_entropy(logits.float(), labels, reduction="none")
    return per.mean()


def loss_hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
    """Forward hook (with kwargs) putting :func:`per_example_mean_loss` in ``output["loss"]``."""
    labels = kwargs.get("labels")
    logits = output.get("logits") if isinstance(output, Mapping) else None
    if labels is None or logits is None:
        return output
    output["loss"] = per_example_mean_loss(logits, labels)
    return output


def per_example_embedding_inputs(model: nn.Module) -> list[Any]:
    """Give every trainable ``nn.Embedding`` one input row per example; returns the hook handles.

    Some models feed an embedding a single row shared by the whole batch (BERT's absolute
    ``position_ids`` buffer has shape ``[1, T]`` and is broadcast when added). Opacus would then
    compute a "per-example" gradient of batch size 1 for that table and fail to stack it with the
    others. Expanding the shared row to ``[B, T]`` (a view, same values) makes the table's
    per-example gradients those of each example. ``B`` is read from the model's ``input_ids`` /
    ``inputs_embeds`` / ``attention_mask``. Remove the handles to undo.
    """
    batch: list[int] = [0]

    def remember(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        for key in ("input_ids", "inputs_embeds", "attention_mask"):
            value = kwargs.get(key)
            if isinstance(value, Tensor):
                batch[0] = value.shape[0]
                return
        if args and isinstance(args[0], Tensor):
            batch[0] = args[0].shape[0]

    def expand(module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], Tensor):
            return None
        ids, b = args[0], batch[0]
        if ids.dim() >= 1 and ids.shape[0] == 1 and b > 1:
            return (ids.expand(b, *ids.shape[1:]), *args[1:])
        return None

    handles = [model.register_forward_pre_hook(remember, with_kwargs=True)]
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.weight.requires_grad:
            handles.append(module.register_forward_pre_hook(expand))
    return handles


def check_dp_support(model: nn.Module, mode: str = "hooks") -> None:
    """Raise :class:`ModelError` when a trainable module cannot get per-example gradients.

    Supported (tested): BERT/MiniLM blocks (Linear, LayerNorm), LLaMA blocks (Linear,
    ``LlamaRMSNorm`` via functorch; rotary embeddings hold no trainable weights), Embedding, and
    linear task heads. Unsupported: trainable modules that own buffers (e.g. BatchNorm: running
    statistics would leak), and EmbeddingBag under functorch.
    """
    from opacus.utils.module_utils import trainable_modules

    bad = [
        f"{name} ({type(module).__name__})"
        for name, module in trainable_modules(model)
        if list(module.buffers()) or (mode == "functorch" and isinstance(module, nn.EmbeddingBag))
    ]
    if bad:
        raise ModelError(
            "dp=sample: Opacus cannot compute per-example gradients of trainable module(s) "
            f"{', '.join(bad[:3])}; freeze them (choose other layers) or use dp=client"
        )


def device_of(optimizer: torch.optim.Optimizer) -> torch.device:
    return next(p.device for group in optimizer.param_groups for p in group["params"])


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    params = {id(p) for p in model.parameters() if p.requires_grad}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in params:
                raise ValueError(
                    "DP-SGD: the optimizer holds parameters that are frozen or not the model's"
                )
