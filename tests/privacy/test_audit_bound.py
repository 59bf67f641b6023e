"""The one-run audit's maths (Steinke, Nasr & Jagielski 2023) on pinned, hand-computed inputs."""

from __future__ import annotations

import math

import pytest

from fedskip.privacy.audit import (
    count_correct,
    epsilon_lower_bound,
    guess_membership,
    p_value,
    randomized_response_accuracy,
)


def test_randomized_response_accuracy() -> None:
    assert randomized_response_accuracy(0.0) == 0.5
    assert randomized_response_accuracy(math.log(3)) == pytest.approx(0.75, abs=1e-15)


def test_p_value_by_hand() -> None:
    """m=4, r=2, v=2, ε=ln 3 (q=3/4), δ=0.01: β = P[Bin(2,¾) ≥ 2] = 9/16; α = max(P[Bin=1]/1,
    P[Bin∈{0,1}]/2) = max(6/16, 7/32) = 6/16; p = 9/16 + 2·4·0.01·6/16 = 0.5925."""
    p = p_value(canaries=4, guesses=2, correct=2, epsilon=math.log(3), delta=0.01)
    assert p == pytest.approx(0.5925, abs=1e-12)


def test_p_value_without_delta_is_the_binomial_tail() -> None:
    """δ=0: P[Bin(3, ½) ≥ 2] = 4/8 at ε=0."""
    assert p_value(canaries=5, guesses=3, correct=2, epsilon=0.0, delta=0.0) == 0.5


def test_p_value_is_capped_at_one() -> None:
    assert p_value(canaries=10**6, guesses=10, correct=5, epsilon=1.0, delta=0.5) == 1.0


@pytest.mark.parametrize("r", [10, 16, 32])
def test_all_correct_without_delta_has_a_closed_form(r: int) -> None:
    """δ=0, v=r: p = q^r, so the bound solves q = 0.05^(1/r), ε = ln(q / (1 − q))."""
    q = 0.05 ** (1 / r)
    expected = math.log(q / (1 - q))
    got = epsilon_lower_bound(canaries=r, guesses=r, correct=r, delta=0.0, confidence=0.95)
    assert got == pytest.approx(expected, abs=1e-9)


def test_pinned_bounds() -> None:
    """Regression pins (δ = 1e-5, 95 %): 32 of 32 right ≈ 2.32; 600 of 600 on 1000 ≈ 5.27."""
    kw = dict(delta=1e-5, confidence=0.95)
    assert epsilon_lower_bound(canaries=32, guesses=32, correct=32, **kw) == pytest.approx(
        2.320433, abs=1e-6
    )
    assert epsilon_lower_bound(canaries=1000, guesses=600, correct=600, **kw) == pytest.approx(
        5.270399, abs=1e-6
    )
    assert epsilon_lower_bound(canaries=32, guesses=16, correct=16, **kw) == pytest.approx(
        1.579286, abs=1e-6
    )


def test_chance_level_guessing_gives_zero() -> None:
    kw = dict(delta=1e-5, confidence=0.95)
    assert epsilon_lower_bound(canaries=64, guesses=32, correct=16, **kw) == 0.0
    assert epsilon_lower_bound(canaries=64, guesses=0, correct=0, **kw) == 0.0


def test_bound_is_where_the_p_value_crosses_the_level() -> None:
    kw = dict(canaries=200, guesses=100, correct=80)
    eps = epsilon_lower_bound(**kw, delta=1e-5, confidence=0.95)
    assert p_value(**kw, epsilon=eps, delta=1e-5) < 0.05
    assert p_value(**kw, epsilon=eps + 1e-6, delta=1e-5) >= 0.05


def test_the_bound_holds_for_randomized_response() -> None:
    """Guesses each right with probability q(1) (exactly 1-DP randomized response, δ = 0): the
    chance that the 95 % bound exceeds the true ε = 1, summed exactly over the number of
    correct guesses, is at most 5 %."""
    from scipy.stats import binom

    q, r = randomized_response_accuracy(1.0), 100
    over = sum(
        binom.pmf(v, r, q)
        for v in range(r + 1)
        if epsilon_lower_bound(canaries=r, guesses=r, correct=v, delta=0.0, confidence=0.95) > 1.0
    )
    assert 0.0 < over <= 0.05


@pytest.mark.parametrize(
    "counts",
    [
        dict(canaries=3, guesses=4, correct=1),
        dict(canaries=3, guesses=2, correct=3),
        dict(canaries=3, guesses=2, correct=-1),
    ],
)
def test_bad_counts(counts: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        p_value(**counts, epsilon=1.0, delta=0.0)


def test_bad_confidence() -> None:
    with pytest.raises(ValueError):
        epsilon_lower_bound(canaries=3, guesses=2, correct=2, delta=0.0, confidence=1.0)


def test_guesses_take_the_extremes_and_abstain_in_the_middle() -> None:
    scores = [0.1, 0.5, 0.3, 0.9, 0.2]
    assert guess_membership(scores, guesses=4) == [-1, 1, 0, 1, -1]
    assert guess_membership(scores, guesses=3) == [-1, 0, 0, 1, -1]
    assert guess_membership(scores, guesses=0) == [0, 0, 0, 0, 0]
    assert guess_membership([1.0, 1.0], guesses=2) == [-1, 1]  # ties: by position
    with pytest.raises(ValueError):
        guess_membership(scores, guesses=6)


def test_count_correct() -> None:
    assert count_correct([1, -1, 0, 1], [True, False, True, False]) == (3, 2)
    with pytest.raises(ValueError):
        count_correct([1], [True, False])
