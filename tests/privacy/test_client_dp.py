"""Client-level DP: the mechanism (same maths as Flower's wrappers, on partial states by name)
and its use inside fedskip's layer-skipping FedAvg over an in-process Flower grid."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.supercore.differential_privacy import (
    compute_clip_model_update,
    compute_stdv,
)

from fedskip.config import Config
from fedskip.fl.dpsgd_node import EPSILON
from fedskip.fl.round_loop import RoundLoop
from fedskip.fl.strategy.builder import LayerSkipFedAvg
from fedskip.fl.strategy.privacy import add_privacy
from fedskip.privacy.accounting import PrivacyAccountant, epsilon_for
from fedskip.privacy.checks import PrivacyWarning
from fedskip.privacy.client_level import (
    ClientDPSettings,
    add_noise,
    clip_to_global,
    next_clip_norm,
    noise_std,
)
from tests.fl.local_grid import LocalGrid
from tests.privacy.privacy_helpers import SIZE, TwoTensorPlanner, delta_client_app

DELTA = 1e-5


# ---------------------------------------------------------------------- the mechanism, by name
def test_clipping_matches_flowers_positional_clipping() -> None:
    rng = np.random.default_rng(0)
    local = {"b": rng.normal(size=(3, 4)), "a": rng.normal(size=5)}
    reference = {"a": rng.normal(size=5), "b": rng.normal(size=(3, 4)), "frozen": np.zeros(2)}
    clipped, was_clipped = clip_to_global(local, reference, 0.5)
    flower = [local["b"].copy(), local["a"].copy()]
    compute_clip_model_update(flower, [reference["b"], reference["a"]], 0.5)
    assert was_clipped
    np.testing.assert_allclose(clipped["b"], flower[0], rtol=1e-12)
    np.testing.assert_allclose(clipped["a"], flower[1], rtol=1e-12)
    norm = np.sqrt(sum(np.sum((clipped[k] - reference[k]) ** 2) for k in local))
    assert norm == pytest.approx(0.5)


def test_noise_std_is_flowers_and_has_that_variance() -> None:
    assert noise_std(1.3, 0.7, 4) == compute_stdv(1.3, 0.7, 4)
    noised = add_noise({"w": np.zeros(SIZE, np.float32)}, 0.25, np.random.default_rng(1))
    assert noised["w"].dtype == np.float32
    assert np.var(noised["w"]) == pytest.approx(0.25**2, rel=0.03)


def test_adaptive_clip_norm_moves_toward_the_target_quantile() -> None:
    settings = ClientDPSettings(noise_multiplier=0.0, clip_norm=1.0, adaptive=True)
    rng = np.random.default_rng(0)
    grown = next_clip_norm(1.0, unclipped=0, total=4, settings=settings, rng=rng)
    shrunk = next_clip_norm(1.0, unclipped=4, total=4, settings=settings, rng=rng)
    assert grown == pytest.approx(np.exp(0.1)) and shrunk == pytest.approx(np.exp(-0.1))
    norms, clip = [0.2, 0.4, 3.0, 5.0], 0.01  # median between 0.4 and 3.0
    for _ in range(200):
        clip = next_clip_norm(clip, sum(n <= clip for n in norms), 4, settings, rng)
    assert 0.4 <= clip <= 3.0


# ---------------------------------------------------------------------- inside the strategy
def run_rounds(cfg: Config, deltas: dict[int, float], rounds: int, **kw: Any) -> Any:
    strategy = LayerSkipFedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=len(deltas),
        min_evaluate_nodes=0,
        min_available_nodes=len(deltas),
        planner=TwoTensorPlanner(),
        all_keys=["w", "u", "frozen"],
        min_replies=1,
        seed=0,
    )
    strategy = add_privacy(strategy, cfg, rng=np.random.default_rng(kw.pop("seed", 0)))
    grid = LocalGrid(delta_client_app(deltas, kw.pop("mods", None)), len(deltas), {})
    initial = ArrayRecord(
        {"w": Array(np.zeros(SIZE, np.float32)), "u": Array(np.ones(7, np.float32))}
    )
    result = RoundLoop(strategy).start(grid=grid, initial_arrays=initial, num_rounds=rounds, **kw)
    return strategy, grid, result


def _cfg(**kw: Any) -> Config:
    base = {"dp": "client", "clip-norm": 1.0, "noise-multiplier": 1.0, "rounds": 3}
    return Config.from_mapping({**base, **{k.replace("_", "-"): v for k, v in kw.items()}})


def test_noise_on_the_aggregate_has_variance_sigma_c_over_m() -> None:
    """Unclipped tiny updates: released w − mean update is pure noise of std σ·C/m, and the
    tensor not trained this round is untouched."""
    deltas = {0: 1e-5, 1: 3e-5}
    strategy, _, result = run_rounds(_cfg(noise_multiplier=2.0, clip_norm=0.5), deltas, 1)
    w = result.arrays["w"].numpy().astype(np.float64)
    noise = w - 2e-5
    assert abs(noise.mean()) < 4 * 0.5 / np.sqrt(SIZE)
    assert noise.var() == pytest.approx((2.0 * 0.5 / 2) ** 2, rel=0.03)
    np.testing.assert_array_equal(result.arrays["u"].numpy(), np.ones(7, np.float32))
    assert strategy.rounds[1].train_metrics[EPSILON] == pytest.approx(
        epsilon_for(noise_multiplier=2.0, sample_rate=1.0, steps=1, delta=DELTA)
    )


def test_big_updates_are_clipped_to_the_norm() -> None:
    """σ = 0: each update is scaled to norm C before the unweighted mean (server-side)."""
    deltas = {0: 1.0, 1: -0.01}
    _, _, result = run_rounds(_cfg(noise_multiplier=0.0, clip_norm=0.5), deltas, 1)
    big = 0.5 / np.sqrt(SIZE)  # client 0's update after clipping, per coordinate
    small = -0.01 if 0.01 * np.sqrt(SIZE) <= 0.5 else -0.5 / np.sqrt(SIZE)
    np.testing.assert_allclose(result.arrays["w"].numpy(), (big + small) / 2, rtol=1e-5)


def test_without_noise_or_clipping_equals_plain_fedavg() -> None:
    deltas = {0: 0.25, 1: -0.75, 2: 0.125}
    _, _, private = run_rounds(_cfg(noise_multiplier=0.0, clip_norm=1e9), deltas, 2)
    _, _, plain = run_rounds(_cfg(dp="none"), deltas, 2)
    np.testing.assert_allclose(private.arrays["w"].numpy(), plain.arrays["w"].numpy(), atol=1e-7)


def test_epsilon_per_round_and_resumed_accountant() -> None:
    cfg = _cfg(noise_multiplier=1.5, fraction_train=1.0)
    strategy, _, _ = run_rounds(cfg, {0: 0.0, 1: 0.0}, 2)
    eps = [strategy.rounds[r].train_metrics[EPSILON] for r in (1, 2)]
    assert eps == [
        epsilon_for(noise_multiplier=1.5, sample_rate=1.0, steps=s, delta=DELTA) for s in (1, 2)
    ]
    saved = json.loads(json.dumps(strategy.state_dict()["client_dp"]))
    resumed = PrivacyAccountant.from_state_dict(saved["accountant"])
    resumed.step(noise_multiplier=1.5, sample_rate=1.0)
    assert resumed.epsilon(DELTA) == epsilon_for(
        noise_multiplier=1.5, sample_rate=1.0, steps=3, delta=DELTA
    )


def test_target_epsilon_plans_sigma_and_refuses_an_extra_round() -> None:
    """A resumed run asking for a third round ends cleanly before it: nothing is sent, the
    global state is the one after round 2, and the strategy says why."""
    cfg = _cfg(target_epsilon=3.0, rounds=2)
    strategy, grid, result = run_rounds(cfg, {0: 0.0, 1: 0.0}, 2)
    assert 3.0 - 0.01 <= strategy.dp_accountant.epsilon(DELTA) <= 3.0
    sent = len(grid.sent)
    loop = RoundLoop(strategy)
    with pytest.warns(PrivacyWarning, match="run stopped: privacy budget"):
        again = loop.start(grid=grid, initial_arrays=result.arrays, num_rounds=3, start_round=3)
    assert len(grid.sent) == sent and again.arrays is result.arrays
    assert "the next round would raise ε" in loop.stopped


def test_client_side_clipping_rejects_an_unclipped_reply() -> None:
    cfg = _cfg(noise_multiplier=0.0, clip_norm=0.5, secagg=True, min_replies=1)
    strategy, _, _ = run_rounds(cfg, {0: 1.0, 1: 1e-6}, 1)  # no mod: client 0 does not clip
    record = strategy.rounds[1]
    assert record.replies_ok == 1 and record.replies_rejected == 1
    assert "exceeds clip-norm 0.5" in record.rejections[0]
