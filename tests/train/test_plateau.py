"""The stopping rule: no improvement of at least min_delta for `patience` rounds."""

from __future__ import annotations

import pytest

from fedskip.train.plateau import Plateau


def test_stops_after_patience_rounds_without_half_a_point() -> None:
    p = Plateau(patience=3, min_delta=0.005)
    values = [0.50, 0.60, 0.62, 0.624, 0.628, 0.6245]  # +0.4, +0.8 (vs best 0.62), -0.35 points
    stops = []
    for r, v in enumerate(values, 1):
        p.update(r, v)
        stops.append(p.stop)
    # 0.624 and 0.6245 fall short of 0.62 + 0.005; 0.628 is a new best (+0.8 points)
    assert stops == [False, False, False, False, False, False]
    assert (p.best, p.best_round, p.stale) == (0.628, 5, 1)
    for r in (7, 8):
        p.update(r, 0.6)
    assert p.stale == 3 and p.stop
    assert p.best_round == 5


def test_gain_exactly_min_delta_counts() -> None:
    p = Plateau(patience=1, min_delta=0.25)
    p.update(1, 0.5)
    assert p.update(2, 0.75)  # exactly +min_delta (binary-exact values)
    assert not p.update(3, 0.99)
    assert p.stop


def test_patience_zero_never_stops_but_tracks_the_best() -> None:
    p = Plateau(patience=0)
    for r, v in enumerate([0.3, 0.2, 0.1, 0.0], 1):
        p.update(r, v)
    assert not p.stop and p.best_round == 1 and p.stale == 3


def test_state_round_trips_so_resume_stops_where_it_would() -> None:
    p = Plateau(patience=2, min_delta=0.01)
    for r, v in enumerate([0.4, 0.5, 0.505], 1):
        p.update(r, v)
    q = Plateau.from_state_dict(p.state_dict())
    assert q == p
    p.update(4, 0.5)
    q.update(4, 0.5)
    assert p.stop and q.stop and q.best_round == 2


@pytest.mark.parametrize(("patience", "min_delta"), [(-1, 0.005), (3, -0.1)])
def test_bad_settings(patience: int, min_delta: float) -> None:
    with pytest.raises(ValueError):
        Plateau(patience=patience, min_delta=min_delta)
