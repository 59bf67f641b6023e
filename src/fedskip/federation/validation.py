"""Validation of client replies before they reach aggregation (Flower-free).

The server trusts nothing a client sends. A training reply must carry exactly the tensors the
server asked that client to train, each with the global tensor's shape, as finite float32
values, plus a positive integer ``num-examples`` and only finite numeric metrics. A reply that
breaks any rule is rejected as a whole (its problems are logged and recorded); the round goes on
with the remaining replies. Catching frozen tensors here matters: a client that sends a frozen
block either has a broken configuration or is trying to change weights it was not asked to train.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WIRE_DTYPE = "float32"
"""The only dtype accepted on the wire (ArrayRecord cannot carry bfloat16)."""

NUM_EXAMPLES = "num-examples"
"""Metric that FedAvg weights by: training examples (not batches) behind the update."""

TRAIN_SECONDS = "train-seconds"
"""Metric of a train reply: the client's own training time this round (wall seconds at the site,
without loading, evaluation or the wire)."""

MAX_LISTED = 3
"""How many offending keys one problem line names."""


@dataclass(frozen=True)
class TensorSpec:
    """What the server expects for one tensor: its shape and wire dtype."""

    shape: tuple[int, ...]
    dtype: str = WIRE_DTYPE


@dataclass
class ReplyVerdict:
    """Outcome of validating one reply: ``ok`` when ``problems`` is empty."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def reason(self) -> str:
        """All problems in one line (for logs and ``metrics.jsonl``)."""
        return "; ".join(self.problems)


def _names(keys: Collection[str]) -> str:
    ordered = sorted(keys)
    shown = ", ".join(repr(k) for k in ordered[:MAX_LISTED])
    more = len(ordered) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def check_keys(
    received: Collection[str], expected: Collection[str], *, frozen: Collection[str] = ()
) -> list[str]:
    """Problems with the set of tensor names: missing, frozen (sent but not trainable), unknown."""
    got, want, frozen_set = set(received), set(expected), set(frozen)
    problems: list[str] = []
    missing = want - got
    if missing:
        problems.append(f"missing {len(missing)} expected tensor(s): {_names(missing)}")
    extra = got - want
    sent_frozen = extra & frozen_set
    if sent_frozen:
        problems.append(f"sent {len(sent_frozen)} frozen tensor(s): {_names(sent_frozen)}")
    unknown = extra - frozen_set
    if unknown:
        problems.append(f"sent {len(unknown)} unknown tensor(s): {_names(unknown)}")
    return problems


def check_tensor(name: str, array: np.ndarray, spec: TensorSpec) -> list[str]:
    """Problems with one tensor: dtype, shape, non-finite values (NaN / ±Inf)."""
    if str(array.dtype) != spec.dtype:
        return [f"tensor {name!r} has dtype {array.dtype}, expected {spec.dtype}"]
    if tuple(array.shape) != tuple(spec.shape):
        return [f"tensor {name!r} has shape {tuple(array.shape)}, expected {tuple(spec.shape)}"]
    if not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        return [f"tensor {name!r} has {bad} non-finite value(s) (NaN/Inf)"]
    return []


def check_metrics(metrics: Mapping[str, Any], *, weight_key: str = NUM_EXAMPLES) -> list[str]:
    """Problems with the metrics: a positive integer weight and finite numbers only."""
    problems: list[str] = []
    weight = metrics.get(weight_key)
    if weight is None:
        problems.append(f"metric {weight_key!r} is missing")
    elif isinstance(weight, bool) or not isinstance(weight, (int, float)):
        problems.append(f"metric {weight_key!r} must be a number, got {type(weight).__name__}")
    elif not math.isfinite(weight) or weight <= 0 or float(weight) != int(weight):
        problems.append(f"metric {weight_key!r} must be a positive integer, got {weight!r}")
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append(f"metric {key!r} is not numeric ({type(v).__name__})")
                break
            if not math.isfinite(v):
                problems.append(f"metric {key!r} is not finite ({v!r})")
                break
    return problems


def validate_update(
    arrays: Mapping[str, np.ndarray],
    metrics: Mapping[str, Any],
    expected: Mapping[str, TensorSpec],
    *,
    frozen: Collection[str] = (),
    weight_key: str = NUM_EXAMPLES,
) -> ReplyVerdict:
    """Validate a training reply against the tensors the server asked for.

    ``arrays``: the decoded tensors of the reply; ``expected``: name → spec of exactly the tensors
    that client was asked to train; ``frozen``: every other parameter name of the model (so a
    frozen tensor is reported as such rather than as unknown).
    """
    verdict = ReplyVerdict(check_keys(arrays.keys(), expected.keys(), frozen=frozen))
    for name in sorted(set(arrays) & set(expected)):
        verdict.problems.extend(check_tensor(name, arrays[name], expected[name]))
    verdict.problems.extend(check_metrics(metrics, weight_key=weight_key))
    return verdict
