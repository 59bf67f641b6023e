"""The stopping rule: no improvement of at least min_delta for `patience` rounds."""

from __future__ import annotations

import pytest

from fedskip.errors import ConfigError
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


def test_min_rounds_holds_off_the_stop_but_not_the_choice() -> None:
    """Seed 43's ICD-9 layer-skipping curve (validation micro F1 per round, rounded): the
    thresholded metric swings between 0 and a partial score before the model has learned; at
    patience 3 the rule ended the run at round 5. With min_rounds 10 it trains on; the best
    round is still chosen over every round, from round 1."""
    values = [0.0, 0.363, 0.0, 0.254, 0.326, 0.30, 0.35, 0.36, 0.355, 0.34, 0.33]
    plain, held = Plateau(patience=3, min_delta=0.005), Plateau(3, 0.005, min_rounds=10)
    stops_plain, stops_held = [], []
    for r, v in enumerate(values, 1):
        plain.update(r, v)
        held.update(r, v)
        stops_plain.append(plain.stop)
        stops_held.append(held.stop)
    assert stops_plain.index(True) == 4  # round 5
    assert stops_held == [False] * 9 + [True, True]  # stale since round 2, stops at round 10
    assert (held.best, held.best_round) == (0.363, 2)
    assert Plateau.from_state_dict(held.state_dict()) == held
    old = held.state_dict()
    del old["min_rounds"]  # a checkpoint written before the key: its default, 0
    assert Plateau.from_state_dict(old).min_rounds == 0


def test_min_rounds_reaches_summary_and_config() -> None:
    from fedskip.config import Config
    from fedskip.train.plateau import ValidationChoice

    choice = ValidationChoice.of("f1", patience=2, min_delta=0.0, min_rounds=4)
    for step, value in enumerate([0.5, 0.4, 0.3], 1):
        choice.observe(step, {"f1": value}, {"f1": value + 0.1})
    assert not choice.stop  # stale 2 = patience, but round 3 < min_rounds 4
    choice.observe(4, {"f1": 0.2}, {"f1": 0.3})
    assert choice.stop
    summary = choice.summary()
    assert (summary["min_rounds"], summary["best_round"], summary["test_at_best"]) == (4, 1, 0.6)
    assert Config.from_mapping({"min-rounds": 10}).min_rounds == 10
    with pytest.raises(ConfigError, match="min-rounds"):
        Config.from_mapping({"min-rounds": -1})
    with pytest.raises(ValueError, match="min_rounds"):
        Plateau(min_rounds=-1)
