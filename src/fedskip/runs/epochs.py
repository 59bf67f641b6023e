"""What centralized and local-only runs share: evaluate after every epoch, write the row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from fedskip.config import Config
from fedskip.data.encode import EncodedCls, EncodedNer
from fedskip.rundir import RunDir
from fedskip.runs.schema import MetricsRow
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
    rows: list[MetricsRow] = field(default_factory=list)

    def __call__(self, epoch: int, loss: float) -> None:
        from fedskip.train.engine import evaluate

        scores: dict[str, Any] = {}
        if self.test_set.features or self.client is not None:  # test-fraction=0: no test set
            scores = evaluate(
                self.model,
                self.test_set,
                self.collate,
                batch_size=self.cfg.batch_size,
                device=self.device,
                cache=self.cache,
            )
        row = MetricsRow(epoch=epoch, client=self.client, train_loss=loss, scores=scores)
        if self.client is None:
            row.elapsed_s = time.perf_counter() - self.started
        self.rundir.append_metrics(row)
        self.rows.append(row)
        if not self.cfg.quiet:
            self.report(epoch, loss, scores)

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
