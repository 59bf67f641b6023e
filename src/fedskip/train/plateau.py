"""Train to a plateau: stop when the validation metric has stopped improving.

The rule (the same for federated rounds and centralized/local epochs): after each round or
epoch the primary metric is measured on a *validation* split — held out of the training data,
never the test set. A value counts as an improvement only when it beats the best so far by at
least ``min_delta`` (metric units: 0.005 is half a point of F1). Training stops once
``patience`` consecutive rounds have brought no improvement — but not before round
``min_rounds`` — or at the maximum. The model
reported is the one of the best validation round; its *test* metric is what a table shows, so
nothing is ever chosen on the test set.

``patience = 0`` switches the rule off (train to the maximum; the best round is still tracked).
``min_rounds`` keeps it from ending a run in its first rounds, where a thresholded metric
(micro F1 of multi-label coding) can sit at 0 or swing between 0 and a partial score while the
model has not yet learned which codes to predict; the best round is tracked from round 1.
The state is a small dict of numbers, so a resumed run stops exactly where an uninterrupted one
would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Plateau", "ValidationChoice"]


@dataclass
class Plateau:
    """Stopping state over rounds (or epochs) numbered from 1.

    ``best`` is the best validation value so far and ``best_round`` where it was reached;
    ``stale`` counts the rounds since the last improvement (by at least ``min_delta``);
    ``history`` holds every (round, value) seen; ``min_rounds``: no stop before that round.
    """

    patience: int = 3
    min_delta: float = 0.005
    min_rounds: int = 0
    best: float | None = None
    best_round: int = 0
    stale: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if self.min_rounds < 0:
            raise ValueError(f"min_rounds must be >= 0, got {self.min_rounds}")

    def update(self, round_: int, value: float) -> bool:
        """Record round ``round_``'s validation value; True when it is a new best."""
        self.history.append((int(round_), float(value)))
        if self.best is None or value >= self.best + self.min_delta:
            self.best, self.best_round, self.stale = float(value), int(round_), 0
            return True
        self.stale += 1
        return False

    @property
    def stop(self) -> bool:
        """True once ``patience`` rounds in a row have not improved and round ``min_rounds``
        has been reached (never when patience = 0)."""
        last = self.history[-1][0] if self.history else 0
        return self.patience > 0 and self.stale >= self.patience and last >= self.min_rounds

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["history"] = [list(h) for h in self.history]
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Plateau:
        history = [(int(r), float(v)) for r, v in state.get("history", [])]
        return cls(
            patience=int(state["patience"]),
            min_delta=float(state["min_delta"]),
            min_rounds=int(state.get("min_rounds", 0)),  # checkpoints from before the key
            best=None if state.get("best") is None else float(state["best"]),
            best_round=int(state.get("best_round", 0)),
            stale=int(state.get("stale", 0)),
            history=history,
        )


@dataclass
class ValidationChoice:
    """The model chosen on validation: a :class:`Plateau` plus the *test* scores of its best
    step, so a report shows the test metric of the validation-chosen model (``test_at_best``)
    and never a best picked on the test set.

    ``observe(step, val, test)`` after each round / epoch; ``summary()`` the ``summary.json``
    fields: ``stopped_round`` (the last step trained), ``stopped_early`` (the plateau rule
    ended training before the maximum), ``best_round``, ``best_val`` and ``test_at_best``
    (primary metric, metric units) and ``best_scores`` (every test score of that step).
    """

    primary: str
    plateau: Plateau
    best_scores: dict[str, Any] = field(default_factory=dict)
    last_step: int = 0

    @classmethod
    def of(
        cls, primary: str, *, patience: int, min_delta: float, min_rounds: int = 0
    ) -> ValidationChoice:
        return cls(primary, Plateau(patience=patience, min_delta=min_delta, min_rounds=min_rounds))

    def observe(self, step: int, val: dict[str, Any], test: dict[str, Any]) -> bool:
        """Record step ``step``; True when its validation ``primary`` is a new best."""
        self.last_step = int(step)
        value = val.get(self.primary)
        if not isinstance(value, (int, float)):
            return False
        improved = self.plateau.update(step, float(value))
        if improved:
            self.best_scores = dict(test)
        return improved

    @property
    def stop(self) -> bool:
        return self.plateau.stop

    def summary(self) -> dict[str, Any]:
        test = self.best_scores.get(self.primary)
        return {
            "stopped_round": self.last_step,
            "stopped_early": self.plateau.stop,
            "patience": self.plateau.patience,
            "min_delta": self.plateau.min_delta,
            "min_rounds": self.plateau.min_rounds,
            "best_round": self.plateau.best_round or None,
            "best_val": self.plateau.best,
            "test_at_best": test if isinstance(test, (int, float)) else None,
            "best_scores": dict(self.best_scores),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "plateau": self.plateau.state_dict(),
            "best_scores": dict(self.best_scores),
            "last_step": self.last_step,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ValidationChoice:
        return cls(
            str(state["primary"]),
            Plateau.from_state_dict(state["plateau"]),
            dict(state.get("best_scores", {})),
            int(state.get("last_step", 0)),
        )
