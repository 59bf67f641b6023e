"""What centralized and local-only runs share: evaluate after every epoch, write the row.

With a validation split (``val-fraction`` > 0) each epoch is also scored on it; the
:class:`~fedskip.train.plateau.ValidationChoice` keeps the best-validation epoch (its trainable
state and its test scores) and stops training at a plateau (``patience`` > 0). The model a run
exports, and the test scores it reports, are then those of the best-validation epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from fedskip.config import Config
from fedskip.data.encode import EncodedCls, EncodedNer
from fedskip.finish import Headline
from fedskip.records.rundir import RunDir
from fedskip.records.schema import MetricsRow, as_number
from fedskip.train.plateau import ValidationChoice
from fedskip.train.prefix_cache import ActivationCache, Collate

if TYPE_CHECKING:
    from torch import nn


@dataclass
class EpochLog:
    """``on_epoch_end`` of the training engine: score the global test set, append the row.

    ``client`` (local-only) names the site whose own model is trained; its rows are per-site
    epochs and are scored even on an empty test set, as they always were.
    """

    cfg: Config
    model: nn.Module
    test_set: EncodedNer | EncodedCls
    collate: Collate
    device: torch.device
    rundir: RunDir
    primary: str
    started: float
    cache: ActivationCache | None = None
    client: int | None = None
    client_name: str = ""
    val_set: EncodedNer | EncodedCls | None = None
    """The validation split (None: ``val-fraction`` = 0, train to ``epochs``)."""
    rows: list[MetricsRow] = field(default_factory=list)
    choice: ValidationChoice | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """Trainable state of the best-validation epoch (empty without a validation split)."""

    def __post_init__(self) -> None:
        if self.val_set is not None:
            self.choice = ValidationChoice.of(
                self.primary,
                patience=self.cfg.patience,
                min_delta=self.cfg.min_delta,
                min_rounds=self.cfg.min_rounds,
            )

    def __call__(self, epoch: int, loss: float) -> bool:
        """Score and record the epoch; True when the plateau rule stops training here."""
        scores: dict[str, Any] = {}
        if self.test_set.features or self.client is not None:  # test-fraction=0: no test set
            scores = self._evaluate(self.test_set)
        row = MetricsRow(epoch=epoch, client=self.client, train_loss=loss, scores=scores)
        if self.val_set is not None and self.choice is not None:
            from fedskip.models.freeze import trainable_state

            row.val = self._evaluate(self.val_set)
            if self.choice.observe(epoch, row.val, scores):
                self.best_state = trainable_state(self.model)
        if self.client is None:
            row.elapsed_s = time.perf_counter() - self.started
        self.rundir.append_metrics(row)
        self.rows.append(row)
        if not self.cfg.quiet:
            self.report(epoch, loss, scores)
        return self.choice is not None and self.choice.stop

    def _evaluate(self, encoded: EncodedNer | EncodedCls) -> dict[str, Any]:
        from fedskip.train.engine import evaluate

        return evaluate(
            self.model,
            encoded,
            self.collate,
            batch_size=self.cfg.batch_size,
            device=self.device,
            cache=self.cache,
        )

    def restore_best(self) -> None:
        """Load the best-validation epoch's trainable state back into the model (the one a
        run exports); nothing without a validation split."""
        if self.best_state:
            from fedskip.models.freeze import load_trainable_state

            load_trainable_state(self.model, self.best_state, strict_keys=False)

    def choice_summary(self) -> dict[str, Any]:
        """``summary.json`` fields of the validation choice (empty without validation)."""
        return self.choice.summary() if self.choice is not None else {}

    def headline(self) -> Headline:
        """This model's ``final_metric`` / ``best_metric`` (:mod:`fedskip.finish`): the
        best-validation epoch's test metric with a validation split, else the last epoch's and
        the best of the test curve."""
        curve = [(row.step, as_number(row.scores.get(self.primary))) for row in self.rows]
        return Headline.of_curve(curve, chosen=self.choice_summary() or None)

    def report(self, epoch: int, loss: float, scores: dict[str, Any]) -> None:
        p, total = self.primary, self.cfg.epochs
        if self.client is not None:
            value = scores.get(p, 0.0)
            line = f"{self.client_name} epoch {epoch}/{total}: loss {loss:.4f}, {p} {value:.4f}"
            print(line, flush=True)
            return
        from tqdm.auto import tqdm

        score = f"{scores[p]:.4f}" if p in scores else "n/a (no test set)"
        tqdm.write(f"epoch {epoch}/{total}: train loss {loss:.4f}, test {p} {score}")

    @property
    def final(self) -> dict[str, Any]:
        """The test scores after the last epoch (empty before the first)."""
        return dict(self.rows[-1].scores) if self.rows else {}

    @property
    def reported(self) -> dict[str, Any]:
        """The test scores of the model a run reports: the best-validation epoch's with a
        validation split, else the last epoch's."""
        if self.choice is not None and self.choice.best_scores:
            return dict(self.choice.best_scores)
        return self.final
