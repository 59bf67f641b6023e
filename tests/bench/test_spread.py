"""Mean ± std over seeds and the held / not held / inconclusive verdict."""

from __future__ import annotations

import math

import pytest

from fedskip.bench.spread import HELD, INCONCLUSIVE, NOT_HELD, Spread, spread, verdict


def test_spread_is_sample_std() -> None:
    s = spread([0.80, 0.82, 0.84])
    assert s.mean == pytest.approx(0.82)
    assert s.std == pytest.approx(0.02)
    assert s.n == 3
    assert s.format() == "82.0 ± 2.0"
    one = spread([0.8125])
    assert one.std is None and one.format(digits=2) == "81.25"
    with pytest.raises(ValueError):
        spread([])


@pytest.mark.parametrize(
    ("difference", "expected"),
    [(0.005, HELD), (0.015, INCONCLUSIVE), (0.025, INCONCLUSIVE), (0.035, NOT_HELD)],
)
def test_verdict_against_a_two_point_threshold(difference: float, expected: str) -> None:
    a, b = Spread(0.8, 0.006, 3), Spread(0.82, 0.008, 3)  # spread of the difference: 0.010
    got, s = verdict(difference, 0.02, [a, b])
    assert got == expected
    assert s == pytest.approx(math.hypot(0.006, 0.008))


def test_one_seed_is_inconclusive_unless_allowed() -> None:
    one, three = Spread(0.8, None, 1), Spread(0.8, 0.01, 3)
    assert verdict(0.0, 0.02, [one, three]) == (INCONCLUSIVE, None)
    assert verdict(0.0, 0.02, [one, three], single_seed_ok=True) == (HELD, None)
    assert verdict(0.03, 0.02, [one], single_seed_ok=True) == (NOT_HELD, None)
