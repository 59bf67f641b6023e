"""Weighted averaging of partial updates (Flower-free).

With layer skipping a reply carries only some of the model's tensors, and with dynamic layer
selection different replies may carry different tensors. Each tensor is therefore averaged over
the replies that returned it, weighted by their training examples; a tensor no reply returned is
absent from the result (the caller keeps its previous global value). When every reply carries the
same tensors this is exactly FedAvg (McMahan et al., 2017).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

Value = TypeVar("Value")


def weighted_mean_per_key(
    updates: Sequence[tuple[Mapping[str, np.ndarray], float]],
) -> dict[str, np.ndarray]:
    """``sum_i w_i x_i[k] / sum_i w_i`` over the updates ``i`` that contain key ``k``.

    ``updates``: ``(tensors, weight)`` pairs; weights are example counts (> 0). Sums run in float64
    and the result is float32 (the wire dtype), so the order of replies does not change the result
    beyond float32 rounding.
    """
    sums: dict[str, np.ndarray] = {}
    totals: dict[str, float] = {}
    for tensors, weight in updates:
        if weight <= 0:
            raise ValueError(f"aggregation weight must be > 0, got {weight}")
        for key, value in tensors.items():
            contribution = np.asarray(value, dtype=np.float64) * float(weight)
            if key in sums:
                sums[key] += contribution
                totals[key] += float(weight)
            else:
                sums[key] = contribution
                totals[key] = float(weight)
    return {k: (sums[k] / totals[k]).astype(np.float32) for k in sums}


def merge_state(previous: Mapping[str, Value], updated: Mapping[str, Value]) -> dict[str, Value]:
    """The new global state: ``updated`` values where present, ``previous`` elsewhere, in
    ``previous``'s order (the values may be numpy arrays or Flower ``Array``s)."""
    unknown = set(updated) - set(previous)
    if unknown:
        raise KeyError(f"update holds tensors outside the global state: {sorted(unknown)[:3]}")
    return {k: updated.get(k, v) for k, v in previous.items()}
