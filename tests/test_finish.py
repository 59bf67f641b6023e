"""The headline of every run's ``summary.json`` (:mod:`fedskip.finish`): one meaning of
``final_metric`` and ``best_metric``, and old records read as they were written."""

from __future__ import annotations

from fedskip.federation.round_rows import headline
from fedskip.finish import GLOBAL_TEST, SITES, Headline
from fedskip.records.schema import MetricsRow, RunSummary


def test_without_validation_final_is_the_last_step_and_best_the_peak_of_the_curve() -> None:
    top = Headline.of_curve([(1, 0.25), (2, 0.75), (3, 0.75), (4, 0.5)])
    assert (top.final_metric, top.best_metric, top.best_round, top.source) == (
        0.5,
        0.75,
        2,  # the earliest of ties
        GLOBAL_TEST,
    )


def test_with_validation_final_and_best_are_the_chosen_steps_test_metric() -> None:
    chosen = {"best_round": 3, "best_val": 0.9, "test_at_best": 0.625}
    top = Headline.of_curve([(1, 0.25), (2, 0.75), (3, 0.625)], chosen=chosen)
    assert (top.final_metric, top.best_metric, top.best_round) == (0.625, 0.625, 3)


def test_nothing_scored_gives_no_headline() -> None:
    top = Headline.of_curve([(1, None), (2, None)])
    assert top.to_json() == {
        "final_metric": None,
        "final_metric_source": None,
        "best_metric": None,
        "best_round": None,
    }


def test_a_federation_without_global_test_data_reports_the_sites_evaluation() -> None:
    rows = [
        MetricsRow(round=1, client_eval={"f1": 0.5}),
        MetricsRow(round=2, client_eval={"f1": 0.25}),
    ]
    top = headline(rows, "f1")
    assert (top.final_metric, top.best_metric, top.best_round, top.source) == (0.25, 0.5, 1, SITES)
    rows[0].scores = {"f1": 0.125}  # the server scored a global test set: that counts, not sites
    mixed = headline(rows, "f1")
    assert (mixed.final_metric, mixed.best_metric, mixed.best_round) == (None, 0.125, 1)


def test_a_new_record_is_read_by_its_final_metric_alone() -> None:
    new = RunSummary({"primary_metric": "f1", "final_metric": None, "final": {"f1": 0.5}})
    assert new.final_metric is None  # no guessing among keys for records that carry it
    old_centralized = RunSummary({"primary_metric": "f1", "final": {"f1": 0.5}})
    old_local = RunSummary({"primary_metric": "f1", "mean_metric": 0.25, "best_metric": 0.75})
    assert (old_centralized.final_metric, old_local.final_metric) == (0.5, 0.25)
