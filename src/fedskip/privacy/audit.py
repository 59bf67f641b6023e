"""The one-run privacy audit's maths (pure functions, no model, no Flower).

Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023,
arXiv 2305.08846). ``m`` canaries are each put into the training data independently with
probability ½ (the auditor keeps the coin flips). After training, an attacker who sees the
model guesses "in" for some canaries and "out" for others and abstains on the rest: ``r``
guesses, ``v`` of them correct. If training is (ε, δ)-DP *per canary* (one canary = one
privacy unit), the number of correct guesses is small with high probability:

    P[v correct or more] ≤ β(ε) + 2·m·δ·α(ε),
    β(ε) = P[Binomial(r, q) ≥ v],       q = e^ε / (1 + e^ε)   (ε-DP randomized response),
    α(ε) = max over i = 1..v of  P[v − i ≤ Binomial(r, q) < v] / i.

That right-hand side is :func:`p_value`. The audit's empirical ε is the largest ε whose p-value
is below ``1 − confidence`` (:func:`epsilon_lower_bound`): with that confidence the training run
is *not* (ε', δ)-DP for any ε' below it. It is a lower bound on the true ε — never a guarantee,
and weak with few canaries (m = r = v = 32 all correct gives only ≈ 2.3 at 95 %) — where the
accountant's ε is an upper bound that holds whatever the attacker does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binom

__all__ = [
    "count_correct",
    "epsilon_lower_bound",
    "guess_membership",
    "p_value",
    "randomized_response_accuracy",
]

_SEARCH_STEPS = 60  # bisection halvings: the ε found is within 2^-60 of the bracket's width


def randomized_response_accuracy(epsilon: float) -> float:
    """q = e^ε / (1 + e^ε): the best accuracy of an ε-DP guess of one fair coin."""
    return 1.0 / (1.0 + math.exp(-epsilon))


def _check_counts(canaries: int, guesses: int, correct: int) -> None:
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(
            f"need 0 <= correct ({correct}) <= guesses ({guesses}) <= canaries ({canaries})"
        )


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability (an upper bound on it) of ``correct`` or more right guesses out of
    ``guesses`` on ``canaries`` canaries if training were (``epsilon``, ``delta``)-DP per
    canary; at most 1. See the module docstring for the formula."""
    _check_counts(canaries, guesses, correct)
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta <= 1 (got {epsilon}, {delta})")
    q = randomized_response_accuracy(epsilon)
    beta = float(binom.sf(correct - 1, guesses, q))  # P[Bin(r, q) >= v]
    alpha = 0.0
    if correct > 0:
        # below[i - 1] = P[v - i <= Bin(r, q) < v] for i = 1..v
        below = np.cumsum(binom.pmf(np.arange(correct - 1, -1, -1), guesses, q))
        alpha = float(np.max(below / np.arange(1, correct + 1)))
    return min(1.0, beta + 2.0 * canaries * delta * alpha)


def epsilon_lower_bound(
    *, canaries: int, guesses: int, correct: int, delta: float, confidence: float
) -> float:
    """The largest ε (≥ 0) such that (ε, ``delta``)-DP per canary is rejected at
    ``confidence`` (e.g. 0.95): the one-run audit's empirical lower bound on ε. 0 when even
    ε = 0 cannot be rejected (too few or too many wrong guesses)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    level = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return (
            p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=eps, delta=delta)
            < level
        )

    if guesses == 0 or not rejected(0.0):
        return 0.0
    low, high = 0.0, 1.0
    while rejected(high):  # p-value grows with ε and reaches 1 (v <= r), so this ends
        low, high = high, 2.0 * high
    for _ in range(_SEARCH_STEPS):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if rejected(mid) else (low, mid)
    return low


def guess_membership(scores: Sequence[float], *, guesses: int) -> list[int]:
    """The attacker's guesses from membership scores (higher = more likely trained on):
    +1 ("in") for the ``guesses // 2`` highest scores, −1 ("out") for the
    ``guesses - guesses // 2`` lowest, 0 (abstain) for the rest. Ties break by position, so
    the guesses depend on the scores only, never on who was included."""
    if not 0 <= guesses <= len(scores):
        raise ValueError(f"guesses must be in [0, {len(scores)}], got {guesses}")
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    out: list[int] = [0] * len(scores)
    n_in = guesses // 2
    for i in order[: guesses - n_in]:
        out[i] = -1
    for i in order[len(order) - n_in :] if n_in else []:
        out[i] = 1
    return out


def count_correct(guesses: Sequence[int], included: Sequence[bool]) -> tuple[int, int]:
    """(guesses made, correct ones): a +1 on an included canary or a −1 on an excluded one."""
    if len(guesses) != len(included):
        raise ValueError(f"{len(guesses)} guesses for {len(included)} canaries")
    made = sum(1 for g in guesses if g != 0)
    right = sum(1 for g, inc in zip(guesses, included) if (g == 1 and inc) or (g == -1 and not inc))
    return made, right
