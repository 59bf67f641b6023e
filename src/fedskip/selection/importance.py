"""Per-block importance scores for ``layer-strategy=importance``.

A block's score is the L2 norm of the loss gradient with respect to all of its parameters,
averaged over a small probe of local batches (the mean gradient, then its norm). Blocks whose
weights the task pulls hardest are trained. Scoring leaves the model as it found it: the
``requires_grad`` flags, the train/eval mode and the (cleared) gradients are restored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from fedskip.models.layers import LayerStack


def score_layers(
    model: nn.Module, stack: LayerStack, batches: Iterable[Mapping[str, torch.Tensor]]
) -> list[float]:
    """Gradient L2 norm per block (index = block) over ``batches`` of model inputs with ``labels``.

    All blocks are temporarily trainable; embeddings and head stay as they are. Dropout is off
    during the probe (eval mode) so scores are deterministic for fixed data. Raises ValueError
    when ``batches`` is empty.
    """
    params = dict(model.named_parameters())
    saved_flags = {name: p.requires_grad for name, p in params.items()}
    saved_grads = {name: p.grad for name, p in params.items()}
    was_training = model.training
    block_params: list[list[nn.Parameter]] = [[] for _ in range(stack.num_blocks)]
    for name, param in params.items():
        block = stack.block_of(name)
        param.grad = None
        param.requires_grad_(block is not None)
        if block is not None:
            block_params[block].append(param)
    try:
        model.eval()
        count = _accumulate(model, batches)
        if count == 0:
            raise ValueError("score_layers needs at least one probe batch")
        return [_norm(group) / count for group in block_params]
    finally:
        for name, param in params.items():
            param.requires_grad_(saved_flags[name])
            param.grad = saved_grads[name]
        model.train(was_training)


def _accumulate(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> int:
    """Backward the loss of every batch (gradients add up); returns the number of batches."""
    device = next(model.parameters()).device
    count = 0
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch.items()}
        if "labels" not in inputs:
            raise ValueError("probe batches must carry 'labels' to compute a loss")
        loss = model(**inputs).loss
        loss.backward()
        count += 1
    return count


def _norm(params: list[nn.Parameter]) -> float:
    """L2 norm over the gradients of ``params`` (missing gradients count as zero)."""
    total = 0.0
    for p in params:
        if p.grad is not None:
            total += float(p.grad.detach().float().pow(2).sum())
    return math.sqrt(total)
