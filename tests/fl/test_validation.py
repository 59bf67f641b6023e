"""Reply validation: every kind of bad reply is rejected with a reason; a good one passes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedskip.federation.validation import TensorSpec, check_metrics, validate_update

EXPECTED = {"block.w": TensorSpec((2, 3)), "head.b": TensorSpec((2,))}
FROZEN = {"embed.w", "block0.w"}


def good_arrays() -> dict[str, np.ndarray]:
    return {
        "block.w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "head.b": np.ones(2, dtype=np.float32),
    }


def test_good_reply_passes() -> None:
    verdict = validate_update(
        good_arrays(), {"num-examples": 7, "train-loss": 0.5}, EXPECTED, frozen=FROZEN
    )
    assert verdict.ok and verdict.problems == []


def _with(**changes: Any) -> dict[str, np.ndarray]:
    arrays = good_arrays()
    for key, value in changes.items():
        name = key.replace("__", ".")
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    return arrays


BAD_CASES = [
    (
        "nan",
        _with(head__b=np.array([0.0, np.nan], dtype=np.float32)),
        "tensor 'head.b' has 1 non-finite value(s) (NaN/Inf)",
    ),
    (
        "inf",
        _with(block__w=np.full((2, 3), np.inf, dtype=np.float32)),
        "tensor 'block.w' has 6 non-finite value(s) (NaN/Inf)",
    ),
    (
        "shape",
        _with(block__w=np.zeros((3, 2), dtype=np.float32)),
        "tensor 'block.w' has shape (3, 2), expected (2, 3)",
    ),
    (
        "dtype",
        _with(head__b=np.ones(2, dtype=np.float64)),
        "tensor 'head.b' has dtype float64, expected float32",
    ),
    (
        "bf16-as-int16",
        _with(head__b=np.ones(2, dtype=np.int16)),
        "tensor 'head.b' has dtype int16, expected float32",
    ),
    ("missing", _with(head__b=None), "missing 1 expected tensor(s): 'head.b'"),
    ("frozen", _with(embed__w=np.zeros(4, dtype=np.float32)), "sent 1 frozen tensor(s): 'embed.w'"),
    ("unknown", _with(evil=np.zeros(1, dtype=np.float32)), "sent 1 unknown tensor(s): 'evil'"),
]


@pytest.mark.parametrize(("case", "arrays", "problem"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_tensors_are_rejected(case: str, arrays: dict[str, np.ndarray], problem: str) -> None:
    verdict = validate_update(arrays, {"num-examples": 3}, EXPECTED, frozen=FROZEN)
    assert not verdict.ok
    assert verdict.problems == [problem]


METRIC_CASES = [
    ("no-weight", {"train-loss": 0.1}, "metric 'num-examples' is missing"),
    ("zero", {"num-examples": 0}, "metric 'num-examples' must be a positive integer, got 0"),
    (
        "fraction",
        {"num-examples": 2.5},
        "metric 'num-examples' must be a positive integer, got 2.5",
    ),
    ("bool", {"num-examples": True}, "metric 'num-examples' must be a number, got bool"),
    ("nan-metric", {"num-examples": 4, "f1": float("nan")}, "metric 'f1' is not finite (nan)"),
    (
        "text-metric",
        {"num-examples": 4, "note": "chest pain"},
        "metric 'note' is not numeric (str)",
    ),
]


@pytest.mark.parametrize(
    ("case", "metrics", "problem"), METRIC_CASES, ids=[c[0] for c in METRIC_CASES]
)
def test_bad_metrics_are_rejected(case: str, metrics: dict[str, Any], problem: str) -> None:
    assert problem in check_metrics(metrics)
    assert not validate_update(good_arrays(), metrics, EXPECTED).ok


def test_reason_joins_all_problems() -> None:
    arrays = _with(head__b=None, embed__w=np.zeros(1, dtype=np.float32))
    verdict = validate_update(arrays, {}, EXPECTED, frozen=FROZEN)
    assert verdict.reason() == (
        "missing 1 expected tensor(s): 'head.b'; sent 1 frozen tensor(s): 'embed.w'; "
        "metric 'num-examples' is missing"
    )
