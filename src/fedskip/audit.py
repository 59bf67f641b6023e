"""The privacy audit of a finished run (config key ``audit-canaries``): canaries and membership.

Run by the auditor — the server (federated) or the trainer (centralized) — on the final model,
after training and before export:

1. every canary (:mod:`fedskip.data.canaries`) is scored by its loss under the model; the
   ``audit-guesses`` lowest-loss / highest-loss halves are guessed "in" / "out" (from the
   scores alone), then checked against the coin flips;
2. the one-run lower bound on ε at the run's δ (:mod:`fedskip.privacy.audit`) follows from the
   number of correct guesses, at ``audit-confidence``;
3. the loss-threshold membership attack's AUC on each site's real training notes versus its
   held-out notes (:mod:`fedskip.privacy.membership`).

The result is ``summary.json``'s ``audit``; the auditor's record of every canary (coin flip,
loss, guess) goes to ``OUT/audit/canaries.jsonl``. A model trained with canaries is an *audit
run's* model — it has seen random labels — and is marked so in its export.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedskip.config import Config
from fedskip.data.canaries import is_canary
from fedskip.privacy.audit import count_correct, epsilon_lower_bound, guess_membership
from fedskip.privacy.membership import document_losses, loss_auc
from fedskip.records.schema import as_number

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from fedskip.models.layers import LayerStack
    from fedskip.pipeline import Prepared

AUDIT_DIR = "audit"
CANARY_RECORD = "canaries.jsonl"


def _losses(
    cfg: Config,
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    stack: LayerStack,
    prepared: Prepared,
    docs: Sequence[Any],
) -> np.ndarray:
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import activation_cache, collator, encode

    if not docs:
        return np.zeros(0)
    encoded = encode(docs, tokenizer, prepared, cfg)
    return document_losses(
        model,
        encoded,
        collator(tokenizer, prepared),
        documents=len(docs),
        batch_size=cfg.batch_size,
        device=resolve_device(cfg.device),
        cache=activation_cache(cfg, stack, tokenizer),
    )


def membership_attack(
    cfg: Config,
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    stack: LayerStack,
    prepared: Prepared,
) -> dict[str, Any]:
    """Loss-threshold attack AUC per client (its real training notes vs its held-out notes)
    and their mean; canaries are left out of both sides."""
    per_site: dict[str, float | None] = {}
    members = non_members = 0
    for name, train, test in zip(
        prepared.client_names, prepared.client_train, prepared.client_test
    ):
        real = [d for d in train if not is_canary(d)]
        per_site[name] = loss_auc(
            _losses(cfg, model, tokenizer, stack, prepared, real).tolist(),
            _losses(cfg, model, tokenizer, stack, prepared, test).tolist(),
        )
        members, non_members = members + len(real), non_members + len(test)
    scored = [a for a in per_site.values() if a is not None]
    return {
        "attack": "loss threshold",
        "auc": float(np.mean(scored)) if scored else None,
        "per_site": per_site,
        "members": members,
        "non_members": non_members,
    }


def run_audit(
    cfg: Config,
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    stack: LayerStack,
    prepared: Prepared,
    *,
    out: str | Path,
    accountant_epsilon: float | None,
) -> dict[str, Any]:
    """Score the canaries and the real notes under the final ``model``; write the auditor's
    canary record under ``out`` and return ``summary.json``'s ``audit``."""
    from fedskip.train.engine import unwrap_model

    model = unwrap_model(model)  # an Opacus wrapper (centralized DP-SGD) scores the same
    canaries = prepared.canaries
    losses = _losses(cfg, model, tokenizer, stack, prepared, [c.document for c in canaries])
    # the membership score is −loss; a canary without a labelled token scores lowest
    scores = [-float(x) if np.isfinite(x) else -np.inf for x in losses]
    guesses = guess_membership(scores, guesses=cfg.audit_guess_count())
    made, correct = count_correct(guesses, [c.included for c in canaries])
    bound = epsilon_lower_bound(
        canaries=len(canaries),
        guesses=made,
        correct=correct,
        delta=cfg.delta,
        confidence=cfg.audit_confidence,
    )
    folder = Path(out) / AUDIT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "canary": c.document.doc_id,
            "client": c.client,
            "included": c.included,
            "loss": float(x) if np.isfinite(x) else None,
            "guess": g,
        }
        for c, x, g in zip(canaries, losses, guesses)
    ]
    (folder / CANARY_RECORD).write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return {
        "audit_run": True,
        "epsilon_lower_bound": bound,
        "accountant_epsilon": accountant_epsilon,
        "delta": cfg.delta,
        "confidence": cfg.audit_confidence,
        "canaries": len(canaries),
        "included": sum(c.included for c in canaries),
        "guesses": made,
        "correct": correct,
        "score": "loss",
        "method": "one-run audit (Steinke, Nasr & Jagielski 2023)",
        "membership_inference": membership_attack(cfg, model, tokenizer, stack, prepared),
    }


def audit_marker(cfg: Config) -> dict[str, Any]:
    """What an audit run's exported model says about itself (``fedskip.json``)."""
    if not cfg.audit_canaries:
        return {}
    return {
        "audit_run": True,
        "audit_canaries": cfg.audit_canaries,
        "audit_note": "trained with random-label canary notes for a privacy audit; not for use",
    }


def audit_lines(summary: dict[str, Any]) -> list[str]:
    """The audit of a run's ``summary.json`` beside the accountant's ε, as plain lines."""
    audit = summary["audit"]
    eps, unit = as_number(summary.get("epsilon")), summary.get("privacy_unit")
    per = f" per {unit}" if unit else ""
    upper = (
        f"{eps:.2f}{per} at δ={summary.get('delta')}"
        if eps is not None
        else "none (no DP: no upper bound)"
    )
    mia = audit.get("membership_inference") or {}
    sites = ", ".join(
        f"{name} {'–' if auc is None else f'{auc:.2f}'}"
        for name, auc in (mia.get("per_site") or {}).items()
    )
    auc = mia.get("auc")
    return [
        f"accountant ε (upper bound): {upper}",
        f"audit ε (lower bound, {100 * audit['confidence']:g}% confidence, δ={audit['delta']}): "
        f"{audit['epsilon_lower_bound']:.2f} — {audit['canaries']} canaries "
        f"({audit['included']} included), {audit['guesses']} guesses, {audit['correct']} correct",
        f"membership inference ({mia.get('attack', 'loss threshold')}) AUC: "
        + ("–" if auc is None else f"{auc:.3f}")
        + (f" ({sites})" if sites else "")
        + " — 0.5 is chance",
    ]
