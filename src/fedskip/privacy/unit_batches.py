"""Poisson sampling over privacy units, in memory-bounded micro-batches (see
:mod:`fedskip.privacy.units` for what a unit is and :mod:`fedskip.privacy.dpsgd` for the rest).

One optimizer step of unit-level DP-SGD:

1. :class:`UnitBatches` draws a Poisson sample of *units* (each unit joins with probability q =
   expected units per batch / units at the site) and yields all examples of the drawn units in
   micro-batches of at most ``micro_batch`` examples (the engine's collate fn builds them, so
   the batching is generic over feature dicts); the last micro-batch of a step is marked
   ``ends_step``.
2. After each micro-batch's backward pass, Opacus has left one per-example gradient row per
   example in ``p.grad_sample``; :class:`UnitDPOptimizer` adds each row into its unit's row
   (``index_add``) and drops the per-example rows, so memory holds one micro-batch of examples
   plus one row per drawn unit, however many examples a unit has.
3. At ``step()`` the per-unit rows become ``p.grad_sample``: Opacus' ``DPOptimizer`` clips each
   *unit's* gradient to ``clip-norm``, adds N(0, (σ·C)²) to the sum and divides by the expected
   number of units per step; the accountant composes (σ, q) once per step.

With ``grad-accum`` = k > 1 a step merges k Poisson draws, and a unit may be drawn in more than
one of them. Its rows of all the step's draws are summed into one row before clipping, so a
unit is one DP sample per optimizer step (its clipped contribution is ≤ C, however often it was
drawn): the step's sample is then a Poisson sample at rate 1 − (1 − q)^k ≤ k·q, the rate the
step is accounted at. The step keeps k gradient parts (the first holds every unit's row, the
others none) so Opacus still divides by the k draws' expected size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from opacus.optimizers import DPOptimizer
from torch import Tensor

from fedskip.privacy.accounting import steps_per_epoch


class MicroBatch(dict):
    """A collated micro-batch; ``ends_step`` tells the engine to step the optimizer after it."""

    ends_step: bool = False


class DrawSink(Protocol):
    """What :class:`UnitBatches` tells the DP optimizer: :class:`UnitDPOptimizer` (Opacus'
    per-example rows) or :class:`fedskip.privacy.fast_clipping.FastUnitDPOptimizer`."""

    def begin_draw(self, units: list[int]) -> int: ...

    def expect_rows(self, draw: int, slots: Tensor) -> None: ...

    def fold(self) -> None: ...


class StepDraws:
    """The bookkeeping of the optimizer step being built, shared by both DP optimizers: the
    unit ids of each Poisson draw of the step, and the backward passes whose rows are not yet
    folded (each: its draw and the unit slot of every example row)."""

    def __init__(self) -> None:
        self.draws: list[list[int]] = []
        self.pending: list[tuple[int, Tensor]] = []

    def begin(self, units: list[int]) -> int:
        """Start a draw of ``units``; returns its index. An example's unit slot in the draw is
        its unit's position in ``units``."""
        self.draws.append(list(units))
        return len(self.draws) - 1

    def expect(self, draw: int, slots: Tensor) -> None:
        """The next backward pass yields one row per entry of ``slots`` (slots in ``draw``)."""
        self.pending.append((draw, slots))

    def next_pending(self) -> tuple[int, Tensor]:
        """The oldest backward pass not yet folded."""
        return self.pending.pop(0)

    def step_units(self) -> list[int]:
        """The step's units in first-drawn order (a unit of several draws is one unit)."""
        return list(dict.fromkeys(u for units in self.draws for u in units))

    def finish(self) -> None:
        """Before the step: every micro-batch must have had its backward pass folded."""
        if self.pending:
            raise RuntimeError(f"DP-SGD: {len(self.pending)} micro-batch(es) got no backward")

    def clear(self) -> None:
        self.draws, self.pending = [], []


class UnitDPOptimizer(DPOptimizer):
    """Opacus' ``DPOptimizer`` whose per-sample gradients are per *unit*: the sum of the
    per-example gradients of the unit's examples, over all micro-batches of the step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step = StepDraws()
        self._sums: dict[int, dict[int, Tensor]] = {}  # draw -> param index -> [units, *shape]

    def begin_draw(self, units: list[int]) -> int:
        """Start a Poisson draw of the units ``units`` (their ids) in this step; returns its
        index (see :meth:`StepDraws.begin`)."""
        return self._step.begin(units)

    def expect_rows(self, draw: int, slots: Tensor) -> None:
        """The next backward pass yields one gradient row per entry of ``slots`` (the unit slot
        of each example in ``draw``)."""
        self._step.expect(draw, slots)

    def fold(self) -> None:
        """Add the per-example rows of the last backward pass into their units' rows."""
        if not self._step.pending or all(
            getattr(p, "grad_sample", None) is None for p in self.params
        ):
            return
        draw, slots = self._step.next_pending()
        sums = self._sums.setdefault(draw, {})
        for i, p in enumerate(self.params):
            rows = p.grad_sample
            rows = torch.cat(rows) if isinstance(rows, list) else rows
            if rows is None or rows.shape[0] != slots.numel():
                got = None if rows is None else rows.shape[0]
                raise RuntimeError(
                    f"DP-SGD: {got} per-example gradient rows for {slots.numel()} examples; "
                    "each micro-batch must get exactly one backward pass"
                )
            if i not in sums:
                sums[i] = rows.new_zeros((len(self._step.draws[draw]), *p.shape))
            sums[i].index_add_(0, slots.to(rows.device), rows)
            p.grad_sample = None

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool | None:
        self.fold()
        self._step.finish()
        draws = self._step.draws or [[]]
        step_units = self._step.step_units()
        row_of = {unit: row for row, unit in enumerate(step_units)}
        for i, p in enumerate(self.params):
            merged = p.new_zeros((len(step_units), *p.shape))
            for d, units in enumerate(draws):
                if units and i in self._sums.get(d, {}):
                    rows = torch.tensor([row_of[u] for u in units], device=merged.device)
                    merged.index_add_(0, rows, self._sums[d][i])
            if len(draws) == 1:
                p.grad_sample = merged
            else:  # k parts, so Opacus divides by k draws' expected size (and accounts k·q)
                p.grad_sample = [merged] + [p.new_zeros((0, *p.shape))] * (len(draws) - 1)
        self._step.clear()
        self._sums = {}
        return super().pre_step(closure)

    def unit_norms(self) -> Tensor:
        """Each unit's gradient norm (all trainable tensors) of the last step, before clipping."""
        rows = [p.grad_sample for p in self.params if getattr(p, "grad_sample", None) is not None]
        rows = [torch.cat(r) if isinstance(r, list) else r for r in rows]
        if not rows:
            return torch.zeros(0)
        return (
            torch.stack([torch.linalg.vector_norm(r.flatten(1), dim=1) ** 2 for r in rows])
            .sum(0)
            .sqrt()
        )


class UnitBatches:
    """The private loader handed to the engine: per epoch ``steps_per_epoch(q)`` Poisson draws
    over units, ``draws_per_step`` draws per optimizer step (``grad-accum``), each step's
    examples in micro-batches. A step that drew no unit at all is still one noised release:
    ``on_empty`` applies it (the model cannot run a zero-example batch)."""

    def __init__(
        self,
        dataset: Sequence[Any],
        units: Sequence[int],
        *,
        sample_rate: float,
        micro_batch: int,
        collate_fn: Callable[[list[Any]], Any],
        generator: torch.Generator,
        optimizer: DrawSink,
        on_empty: Callable[[], None],
        draws_per_step: int = 1,
    ) -> None:
        self.dataset = dataset
        self.sample_rate = sample_rate
        self.members: list[list[int]] = [[] for _ in range(max(units, default=-1) + 1)]
        for example, unit in enumerate(units):
            self.members[unit].append(example)
        self.micro_batch = max(1, micro_batch)
        self.collate_fn = collate_fn
        self.generator = generator
        self.optimizer = optimizer
        self.on_empty = on_empty
        self.draws_per_step = max(1, draws_per_step)

    @property
    def num_units(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        """Poisson draws per epoch (optimizer steps × ``draws_per_step``)."""
        return steps_per_epoch(self.sample_rate)

    def __iter__(self) -> Iterator[MicroBatch]:
        draws = len(self)
        for first in range(0, draws, self.draws_per_step):
            step = [self._draw() for _ in range(min(self.draws_per_step, draws - first))]
            if not any(step):
                for _ in step:
                    self.optimizer.begin_draw([])
                self.on_empty()
                continue
            chunks: list[tuple[int, list[tuple[int, int]]]] = []
            for chosen in step:  # an empty draw still counts in the step (Opacus' divisor)
                draw = self.optimizer.begin_draw(chosen)
                chunks += [(draw, chunk) for chunk in self._chunks(chosen)]
            for k, (draw, chunk) in enumerate(chunks):
                batch = MicroBatch(self.collate_fn([self.dataset[e] for e, _ in chunk]))
                batch.ends_step = k + 1 == len(chunks)
                self.optimizer.expect_rows(draw, torch.tensor([s for _, s in chunk]))
                yield batch
                self.optimizer.fold()  # the engine ran this micro-batch's backward

    def _draw(self) -> list[int]:
        mask = torch.rand(self.num_units, generator=self.generator) < self.sample_rate
        return mask.nonzero().reshape(-1).tolist()

    def _chunks(self, chosen: list[int]) -> list[list[tuple[int, int]]]:
        """(example, unit slot in the draw) pairs of the drawn units, ``micro_batch`` at a time."""
        rows = [(e, slot) for slot, unit in enumerate(chosen) for e in self.members[unit]]
        return [rows[i : i + self.micro_batch] for i in range(0, len(rows), self.micro_batch)]
