"""Metrics against values computed by hand on tiny examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedskip.train.metrics import (
    TaskInfo,
    classification_metrics,
    ner_metrics,
    primary_metric,
)


def test_ner_strict_micro_and_per_type() -> None:
    # gold: PROBLEM(0-1), TEST(3), PROBLEM(0)            -> 3 entities
    # pred: PROBLEM(0-1) correct; TEST as I-TEST (strict: no entity); PROBLEM(0-1) too long
    #       plus a spurious TREATMENT(2)                  -> 3 predicted entities, 1 correct
    gold = [["B-PROBLEM", "I-PROBLEM", "O", "B-TEST"], ["B-PROBLEM", "O", "O"]]
    pred = [["B-PROBLEM", "I-PROBLEM", "O", "I-TEST"], ["B-PROBLEM", "I-PROBLEM", "B-TREATMENT"]]
    m = ner_metrics(gold, pred)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3)
    assert m["per_type"]["PROBLEM"] == {
        "precision": pytest.approx(1 / 2),
        "recall": pytest.approx(1 / 2),
        "f1": pytest.approx(1 / 2),
        "support": 2,
    }
    assert m["per_type"]["TEST"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_type"]["TREATMENT"]["support"] == 0
    assert m["per_type"]["TREATMENT"]["precision"] == 0.0


def test_ner_perfect_and_empty() -> None:
    tags = [["B-TEST", "I-TEST", "O"]]
    assert ner_metrics(tags, tags)["f1"] == 1.0
    empty = ner_metrics([["O", "O"]], [["O", "O"]])
    assert empty == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}}


def test_ner_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="sequence 0"):
        ner_metrics([["O", "O"]], [["O"]])


def test_multi_class_accuracy_and_macro_f1() -> None:
    # y_true 0,0,1,2 ; y_pred 0,1,1,1
    # class 0: P=1, R=1/2, F1=2/3 ; class 1: P=1/3, R=1, F1=1/2 ; class 2: F1=0
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 2.0, 1.0]])
    m = classification_metrics([0, 0, 1, 2], logits, ["a", "b", "c"], multi_label=False)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_multi_label_micro_macro_auroc() -> None:
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    # sigmoid > 0.5 <=> logit > 0 ; predictions: [1,0,0], [0,1,0], [1,1,0]
    logits = np.array([[2.0, -1.0, -3.0], [-0.5, 1.0, -2.0], [0.5, 3.0, -1.0]])
    m = classification_metrics(y, logits, ["x", "y", "z"], multi_label=True)
    # tp=3 (x@0, y@1, y@2), fp=1 (x@2), fn=1 (x@1) -> micro F1 = 6/8
    assert m["micro_f1"] == pytest.approx(0.75)
    # code x: P=1/2 R=1/2 F1=1/2 ; code y: F1=1 ; code z never occurs -> excluded
    assert m["macro_f1"] == pytest.approx(0.75)
    # AUROC x: positives {2.0, -0.5} vs negative {0.5}: pairs won 1 of 2 -> 0.5
    # AUROC y: positives {1.0, 3.0} vs negative {-1.0}: 1.0 ; z has one class -> skipped
    assert m["auroc"] == pytest.approx(0.75)


def test_multi_label_auroc_none_when_no_code_has_both_classes() -> None:
    m = classification_metrics([[1, 0]], np.array([[1.0, -1.0]]), ["x", "y"], multi_label=True)
    assert m["auroc"] is None
    assert m["micro_f1"] == 1.0
    assert not math.isnan(m["macro_f1"])


def test_scores_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        classification_metrics([0], np.zeros((1, 2)), ["a", "b", "c"], multi_label=False)


@pytest.mark.parametrize(
    ("task", "multi", "expected"),
    [
        ("ner", False, "f1"),
        ("classification", False, "macro_f1"),
        ("classification", True, "micro_f1"),
    ],
)
def test_primary_metric(task: str, multi: bool, expected: str) -> None:
    assert primary_metric(TaskInfo(task, ["a"], multi)) == expected
