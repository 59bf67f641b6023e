"""Evaluation metrics: seqeval strict entity F1 for NER, sklearn scores for note classification.

Every function returns plain Python floats/ints (JSON-ready). Which number a run reports as
"the" score is decided by :func:`primary_metric`:

* NER: ``f1`` — strict (IOB2) entity-level micro F1; an entity counts only when its type and
  its exact word span match.
* multi-class classification: ``macro_f1`` — clinical note categories are imbalanced, so a
  majority-class model must not look good.
* multi-label (ICD-9) classification: ``micro_f1`` — the usual headline for code assignment.

:func:`score` computes them from a model's per-example logits on encoded data (what
:func:`fedskip.train.engine.evaluate` returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedskip.data.encode import EncodedCls, EncodedNer, decode_ner

MULTI_LABEL_THRESHOLD = 0.5
"""Probability (after the sigmoid) above which a multi-label code is predicted."""


class HasTask(Protocol):
    @property
    def task(self) -> str: ...

    @property
    def multi_label(self) -> bool: ...


@dataclass(frozen=True)
class TaskInfo:
    """What a model predicts: ``task`` ("ner" or "classification"), its labels, multi-label or not."""

    task: str
    label_list: list[str]
    multi_label: bool = False


def primary_metric(task_info: HasTask) -> str:
    """Name of the headline metric for a task (a key of the evaluation dict)."""
    if task_info.task == "ner":
        return "f1"
    return "micro_f1" if task_info.multi_label else "macro_f1"


def ner_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Strict IOB2 entity-level scores over word-level tag sequences.

    Returns ``f1``, ``precision``, ``recall`` (micro over entities) and ``per_type``
    ``{type: {precision, recall, f1, support}}`` where support is the number of gold entities.
    An I- tag that does not continue an entity of the same type starts no entity (strict mode).
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
    gold_l = [list(s) for s in gold]
    pred_l = [list(s) for s in pred]
    if not any(_has_entity(s) for s in gold_l + pred_l):
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}}
    report = classification_report(
        gold_l, pred_l, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
    )
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in sorted(report.items())
        if not name.endswith(" avg")
    }
    micro = report["micro avg"]
    return {
        "f1": float(micro["f1-score"]),
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "per_type": per_type,
    }


def _has_entity(tags: list[str]) -> bool:
    return any(t != "O" for t in tags)


def classification_metrics(
    y_true: np.ndarray | Sequence[Any],
    scores: np.ndarray | Sequence[Any],
    label_names: Sequence[str],
    multi_label: bool,
) -> dict[str, Any]:
    """Scores from raw logits.

    Multi-class: ``y_true`` holds class indices (n,), ``scores`` logits (n, C); returns
    ``accuracy`` and ``macro_f1`` (unweighted mean over the classes that occur in ``y_true`` or
    the predictions).
    Multi-label: ``y_true`` is a 0/1 matrix (n, L), ``scores`` logits (n, L); a code is predicted
    when sigmoid(logit) > 0.5. Returns ``micro_f1``, ``macro_f1`` (over the codes that occur in the gold or predicted sets) and ``auroc``
    (macro over codes whose gold column holds both classes; None when no code does).
    """
    logits = np.asarray(scores, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(label_names):
        raise ValueError(f"scores must be (n, {len(label_names)}), got {logits.shape}")
    if multi_label:
        return _multi_label_metrics(np.asarray(y_true, dtype=np.int64), logits)
    return _multi_class_metrics(np.asarray(y_true, dtype=np.int64), logits)


def _multi_class_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    if len(y_true) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    y_pred = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _multi_label_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import f1_score, roc_auc_score

    if len(y_true) == 0:
        return {"micro_f1": 0.0, "macro_f1": 0.0, "auroc": None}
    if y_true.shape != logits.shape:
        raise ValueError(f"y_true {y_true.shape} and scores {logits.shape} differ in shape")
    probs = 1.0 / (1.0 + np.exp(-logits))
    y_pred = (probs > MULTI_LABEL_THRESHOLD).astype(np.int64)
    present = [j for j in range(y_true.shape[1]) if y_true[:, j].any() or y_pred[:, j].any()]
    macro = (
        float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        if present
        else 0.0
    )
    both = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    auroc = (
        float(np.mean([roc_auc_score(y_true[:, j], probs[:, j]) for j in both])) if both else None
    )
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": macro,
        "auroc": auroc,
    }


# --------------------------------------------------------------------------- model outputs
def score_ner(encoded: EncodedNer, logits: Sequence[np.ndarray]) -> dict[str, Any]:
    """Strict entity-level scores (see :func:`ner_metrics`) on word-level
    tags decoded from per-example subword ``logits``; ``sentences``: gold sequences scored."""
    pred_tags = decode_ner(encoded, [lg.argmax(-1) for lg in logits])
    metrics = ner_metrics(encoded.gold, pred_tags)
    metrics["sentences"] = len(encoded.gold)
    return metrics


def score_cls(encoded: EncodedCls, logits: Sequence[np.ndarray]) -> dict[str, Any]:
    """Classification scores (see :func:`classification_metrics`) of
    per-note ``logits``; ``documents``: notes scored."""
    width = len(encoded.label_names)
    scores = np.stack(logits) if len(logits) else np.zeros((0, width))
    y_true = np.array([f["labels"] for f in encoded.features], dtype=np.int64)
    if not len(logits):
        y_true = y_true.reshape((0, width) if encoded.multi_label else (0,))
    metrics = classification_metrics(y_true, scores, encoded.label_names, encoded.multi_label)
    metrics["documents"] = len(logits)
    return metrics


def score(encoded: EncodedNer | EncodedCls, logits: Sequence[np.ndarray]) -> dict[str, Any]:
    """Task metrics of per-example ``logits`` (from :func:`fedskip.train.engine.predict`) on ``encoded``."""
    if isinstance(encoded, EncodedNer):
        return score_ner(encoded, logits)
    return score_cls(encoded, logits)
