"""Per-key weighted averaging, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from fedskip.federation.aggregation import merge_state, weighted_mean_per_key
from fedskip.federation.round_types import client_seed, sample_clients


def test_weighted_mean_matches_hand_computation() -> None:
    a = {"w": np.array([1.0, 2.0], dtype=np.float32), "b": np.array([4.0], dtype=np.float32)}
    b = {"w": np.array([3.0, 6.0], dtype=np.float32), "b": np.array([0.0], dtype=np.float32)}
    out = weighted_mean_per_key([(a, 1.0), (b, 3.0)])
    # w: (1*1 + 3*3)/4 = 2.5, (2*1 + 6*3)/4 = 5.0 ; b: (4*1 + 0*3)/4 = 1.0
    np.testing.assert_array_equal(out["w"], np.array([2.5, 5.0], dtype=np.float32))
    np.testing.assert_array_equal(out["b"], np.array([1.0], dtype=np.float32))
    assert out["w"].dtype == np.float32


def test_each_key_is_averaged_over_the_replies_that_carry_it() -> None:
    a = {"w": np.array([2.0], dtype=np.float32), "x": np.array([10.0], dtype=np.float32)}
    b = {"w": np.array([4.0], dtype=np.float32)}
    out = weighted_mean_per_key([(a, 2.0), (b, 2.0)])
    np.testing.assert_array_equal(out["w"], [3.0])
    np.testing.assert_array_equal(out["x"], [10.0])  # only a returned x


def test_nonpositive_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="weight must be > 0"):
        weighted_mean_per_key([({"w": np.zeros(1)}, 0.0)])


def test_merge_keeps_untouched_values() -> None:
    prev = {"w": np.zeros(1, dtype=np.float32), "v": np.ones(1, dtype=np.float32)}
    merged = merge_state(prev, {"w": np.full(1, 5.0, dtype=np.float32)})
    assert merged["w"][0] == 5.0 and merged["v"] is prev["v"]
    with pytest.raises(KeyError):
        merge_state(prev, {"z": np.zeros(1)})


def test_sampling_is_deterministic_and_sized_like_flower() -> None:
    ids = list(range(10))
    first = sample_clients(ids, 0.3, 2, seed=7, server_round=3, purpose="train")
    again = sample_clients(list(reversed(ids)), 0.3, 2, seed=7, server_round=3, purpose="train")
    assert first == again and len(first) == 3 and first == sorted(first)
    assert len(sample_clients(ids, 0.05, 2, seed=7, server_round=3, purpose="train")) == 2
    assert sample_clients(ids, 1.0, 1, seed=7, server_round=1, purpose="train") == ids


def test_client_seed_depends_on_seed_round_and_client_only() -> None:
    assert client_seed(42, 2, 1) == client_seed(42, 2, 1)
    assert len({client_seed(42, r, c) for r in (1, 2) for c in (0, 1)}) == 4
    assert 0 <= client_seed(1, 1, 1) < 2**31
