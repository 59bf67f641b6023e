"""Membership scores of notes under a trained model: per-note loss and the loss-threshold attack.

The attacker modelled here holds the released model and a note and asks "was this note trained
on?": a note the model fits unusually well (low loss) probably was. Its success over real
training notes versus held-out notes of the same site is the ROC AUC of −loss (0.5 = chance,
1 = every training note fits better than every held-out one). It is one weak attack among many,
so a low AUC does not show that nothing leaks; a high one shows that something does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fedskip.data.encode import IGNORE_INDEX, EncodedCls, EncodedNer

__all__ = ["document_losses", "loss_auc"]


def _example_loss(logits: np.ndarray, labels: Any, multi_label: bool) -> tuple[float, int]:
    """(summed loss, labelled positions) of one example (nats)."""
    scores = torch.from_numpy(logits).double()
    if multi_label:
        target = torch.tensor(labels, dtype=torch.float64)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(scores, target)
        return float(bce), 1
    if scores.ndim == 1:  # sequence classification: one label
        return float(-torch.log_softmax(scores, -1)[int(labels)]), 1
    target = torch.tensor(labels, dtype=torch.long)
    keep = target != IGNORE_INDEX
    if not bool(keep.any()):
        return 0.0, 0
    logp = torch.log_softmax(scores[keep], -1)
    return float(-logp.gather(1, target[keep][:, None]).sum()), int(keep.sum())


def document_losses(
    model: Any,
    encoded: EncodedNer | EncodedCls,
    collate: Any,
    *,
    documents: int,
    batch_size: int,
    device: Any,
    cache: Any = None,
) -> np.ndarray:
    """Mean cross-entropy (nats per labelled token; BCE per label for multi-label notes) of
    each of the ``documents`` encoded documents under ``model``; NaN for a document with no
    labelled token."""
    from fedskip.train.engine import predict

    logits = predict(
        model, encoded.features, collate, batch_size=batch_size, device=device, cache=cache
    )
    multi_label = isinstance(encoded, EncodedCls) and encoded.multi_label
    total = np.zeros(documents)
    count = np.zeros(documents)
    for doc, feature, lg in zip(encoded.example_documents(), encoded.features, logits):
        loss, n = _example_loss(lg, feature["labels"], multi_label)
        total[doc] += loss
        count[doc] += n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def loss_auc(member_losses: Sequence[float], non_member_losses: Sequence[float]) -> float | None:
    """ROC AUC of the loss-threshold attack (score −loss) separating members from
    non-members; None when either side is empty (NaN losses are dropped)."""
    from sklearn.metrics import roc_auc_score

    members = [x for x in member_losses if np.isfinite(x)]
    others = [x for x in non_member_losses if np.isfinite(x)]
    if not members or not others:
        return None
    truth = [1] * len(members) + [0] * len(others)
    return float(roc_auc_score(truth, [-x for x in members + others]))
