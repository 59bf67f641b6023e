"""Shuffled batches of similar length: less padding, the same examples per epoch.

A right-padded batch costs as much as its longest example times its size. Clinical sentences
range from a few tokens to a full window, so random batches are mostly padding. Each epoch this
sampler shuffles the examples (seeded), cuts the order into windows of ``window`` batches, sorts
each window by length, cuts it into batches and shuffles the batches: every example is seen once
per epoch, batches stay random in which examples they hold and in their order, but pad little.
(The same idea as ``group_by_length`` in Hugging Face's Trainer.) DP-SGD does not use it: its
Poisson sampling decides the batches (see :mod:`fedskip.privacy`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of example indices (see the module docstring); ``lengths[i]``: tokens of example i."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        generator: torch.Generator,
        window: int = 50,
        micro_batches: int = 1,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.window = window
        self.micro_batches = micro_batches

    def __len__(self) -> int:
        """Micro-batches per epoch (they depend only on the number of examples)."""
        n, step = len(self.lengths), self.batch_size * self.micro_batches
        sizes = [
            min(step, n - s)
            for w in range(0, n, step * self.window)
            for s in range(w, min(w + step * self.window, n), step)
        ]
        return sum(math.ceil(size / self.batch_size) for size in sizes)

    def __iter__(self) -> Iterator[list[int]]:
        """Micro-batches of ``batch_size`` examples; with ``micro_batches`` = n, each run of n
        consecutive micro-batches is one length-grouped step of ``n * batch_size`` examples (the
        same examples a run with an n times larger batch sees in that step)."""
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        step = self.batch_size * self.micro_batches
        span = step * self.window
        steps: list[list[int]] = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: self.lengths[i])
            steps += [chunk[j : j + step] for j in range(0, len(chunk), step)]
        for s in torch.randperm(len(steps), generator=self.generator).tolist():
            for j in range(0, len(steps[s]), self.batch_size):
                yield steps[s][j : j + self.batch_size]
