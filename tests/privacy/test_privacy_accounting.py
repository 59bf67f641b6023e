"""Pinned ε for known settings, cumulative composition across rounds and its persistence."""

from __future__ import annotations

import json
import math

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from fedskip.errors import ConfigError, PrivacyBudgetExceeded
from fedskip.privacy.accounting import (
    PrivacyAccountant,
    epsilon_for,
    noise_multiplier_for,
    sample_rate,
    steps_per_epoch,
)

DELTA = 1e-5


def test_pinned_rdp_epsilon() -> None:
    eps = epsilon_for(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=DELTA)
    assert eps == pytest.approx(7.3291, abs=5e-5)
    reference = RDPAccountant()
    reference.history = [(1.5, 0.04, 2250)]
    assert eps == reference.get_epsilon(delta=DELTA)


def test_pinned_prv_epsilon() -> None:
    eps = epsilon_for(
        noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=DELTA, mechanism="prv"
    )
    assert eps == pytest.approx(6.7791, abs=5e-4)


def test_epsilon_before_any_step_is_zero_and_without_noise_infinite() -> None:
    accountant = PrivacyAccountant()
    assert accountant.epsilon(DELTA) == 0.0
    accountant.step(noise_multiplier=0.0, sample_rate=0.1, steps=3)
    assert accountant.epsilon(DELTA) == math.inf


@pytest.mark.parametrize("rounds, steps", [(3, 750), (5, 7)])
def test_persisted_state_composes_like_one_accountant(rounds: int, steps: int) -> None:
    """Each round restores the accountant from its JSON form (as a checkpoint or Flower's
    Context.state would), steps it, saves it; ε equals one accountant stepped through all."""
    saved = json.dumps(PrivacyAccountant().state_dict())
    one = RDPAccountant()
    for _ in range(rounds):
        accountant = PrivacyAccountant.from_state_dict(json.loads(saved))
        for _ in range(steps):
            accountant.step(noise_multiplier=1.5, sample_rate=0.04)
            one.step(noise_multiplier=1.5, sample_rate=0.04)
        saved = json.dumps(accountant.state_dict())
    final = PrivacyAccountant.from_state_dict(json.loads(saved))
    assert final.steps == rounds * steps
    assert final.history == [(1.5, 0.04, rounds * steps)]
    assert final.epsilon(DELTA) == one.get_epsilon(delta=DELTA)


def test_changing_noise_adds_a_segment() -> None:
    accountant = PrivacyAccountant()
    accountant.step(noise_multiplier=1.0, sample_rate=0.1, steps=4)
    accountant.step(noise_multiplier=2.0, sample_rate=0.1, steps=2)
    accountant.step(noise_multiplier=2.0, sample_rate=0.1)
    assert accountant.history == [(1.0, 0.1, 4), (2.0, 0.1, 3)]
    reference = RDPAccountant()
    reference.history = [(1.0, 0.1, 4), (2.0, 0.1, 3)]
    assert accountant.epsilon(DELTA) == reference.get_epsilon(delta=DELTA)


def test_epsilon_after_does_not_spend() -> None:
    accountant = PrivacyAccountant()
    accountant.step(noise_multiplier=1.5, sample_rate=0.04, steps=1000)
    ahead = accountant.epsilon_after(
        noise_multiplier=1.5, sample_rate=0.04, steps=1250, delta=DELTA
    )
    assert ahead == pytest.approx(7.3291, abs=5e-5)
    assert accountant.steps == 1000


def test_noise_multiplier_matches_opacus_and_meets_target() -> None:
    sigma = noise_multiplier_for(target_epsilon=8.0, delta=DELTA, sample_rate=0.04, steps=2250)
    expected = get_noise_multiplier(
        target_epsilon=8.0, target_delta=DELTA, sample_rate=0.04, steps=2250
    )
    assert sigma == expected == 1.416015625
    eps = epsilon_for(noise_multiplier=sigma, sample_rate=0.04, steps=2250, delta=DELTA)
    assert 8.0 - 0.01 <= eps <= 8.0


@pytest.mark.parametrize("target", [1.0, 2.0, 4.0, 8.0])
def test_noise_after_prior_spending_meets_the_remaining_budget(target: float) -> None:
    spent = PrivacyAccountant()
    spent.step(noise_multiplier=3.0, sample_rate=0.05, steps=40)
    assert spent.epsilon(DELTA) < target
    sigma = noise_multiplier_for(
        target_epsilon=target, delta=DELTA, sample_rate=0.05, steps=60, spent=spent
    )
    total = spent.epsilon_after(noise_multiplier=sigma, sample_rate=0.05, steps=60, delta=DELTA)
    assert target - 0.01 <= total <= target


def test_spent_budget_raises() -> None:
    spent = PrivacyAccountant()
    spent.step(noise_multiplier=0.8, sample_rate=0.5, steps=100)
    with pytest.raises(PrivacyBudgetExceeded, match="already reaches target-epsilon=1"):
        noise_multiplier_for(target_epsilon=1.0, delta=DELTA, sample_rate=0.1, steps=5, spent=spent)


def test_unreachable_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'target-epsilon'.*unreachable"):
        noise_multiplier_for(target_epsilon=1e-9, delta=DELTA, sample_rate=1.0, steps=10**6)


def test_sample_rate_and_steps_per_epoch() -> None:
    assert sample_rate(16, 400) == 0.04
    assert sample_rate(64, 40) == 1.0
    assert steps_per_epoch(0.04) == 25
    assert steps_per_epoch(1.0) == 1


@pytest.mark.parametrize("delta", [0.0, 1.0])
def test_bad_delta(delta: float) -> None:
    with pytest.raises(ConfigError, match="'delta'"):
        epsilon_for(noise_multiplier=1.0, sample_rate=0.1, steps=1, delta=delta)


def test_bad_mechanism() -> None:
    with pytest.raises(ConfigError, match="not one of rdp, prv"):
        PrivacyAccountant("moments")


def test_state_of_another_mechanism_is_refused() -> None:
    state = PrivacyAccountant("prv").state_dict()
    with pytest.raises(ConfigError, match="'prv', cannot resume it as 'rdp'"):
        PrivacyAccountant("rdp").load_state_dict(state)


def test_corrupt_state_is_refused() -> None:
    state = {"mechanism": "rdp", "noise_multipliers": [1.0], "sample_rates": [], "steps": [3]}
    with pytest.raises(ConfigError, match="corrupt"):
        PrivacyAccountant.from_state_dict(state)


@pytest.mark.parametrize(
    "sigma, q, steps",
    [(-1.0, 0.1, 1), (math.nan, 0.1, 1), (1.0, 0.0, 1), (1.0, 1.5, 1), (1.0, 0.1, -1)],
)
def test_invalid_step(sigma: float, q: float, steps: int) -> None:
    with pytest.raises(ValueError):
        PrivacyAccountant().step(noise_multiplier=sigma, sample_rate=q, steps=steps)
