"""The Opacus side of DP-SGD: per-example losses, which modules can get per-example gradients,
and the Poisson-sampled loader handed to the training engine (see :mod:`fedskip.privacy.dpsgd`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


class PoissonBatches:
    """The private loader handed to the engine: Opacus' Poisson ``DPDataLoader``, where an empty
    draw first triggers ``on_empty`` (the noise-only step) and is then yielded (the engine skips
    zero-example batches)."""

    def __init__(self, loader: Any, on_empty: Any) -> None:
        self.loader = loader
        self.on_empty = on_empty
        self.dataset = loader.dataset
        self.sample_rate = loader.sample_rate

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.on_empty is not None and _batch_size(batch) == 0:
                self.on_empty()
            yield batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        first = next((v for v in batch.values() if isinstance(v, Tensor)), None)
        return int(first.shape[0]) if first is not None else 0
    if isinstance(batch, (list, tuple)):
        return _batch_size(batch[0]) if batch else 0
    return int(batch.shape[0]) if isinstance(batch, Tensor) else 1


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
