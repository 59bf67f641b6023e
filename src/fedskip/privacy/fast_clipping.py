"""Unit-level DP-SGD clipping without per-example copies of the Linear weights
(``dp-sample-grads=fast``, the default; ``hooks`` / ``functorch`` are Opacus' per-example
gradients for every layer, kept as the reference).

The mechanism is the same as :mod:`fedskip.privacy.unit_batches`' — each privacy unit's
gradient (the sum over all its examples, across micro-batches and the Poisson draws of one
step) is clipped to ``clip-norm`` C as a whole, the clipped gradients are summed, N(0, (σ·C)²)
is added and the sum divided by the expected number of units per step — so the privacy
guarantee and its accounting are unchanged. Only the arithmetic differs:

- :class:`UnitGradientTape` hooks every trainable leaf module and keeps, per micro-batch, what
  the clipping needs. A ``nn.Linear`` keeps its input and output-gradient rows per token
  (``tokens × (d_in + d_out)`` floats, dropping tokens whose gradient is exactly zero, i.e.
  padding), never a ``d_out × d_in`` gradient per example. Other trainable modules (norms,
  embeddings, non-Linear adapters) get Opacus' per-example gradients (its registered grad
  sampler, functorch otherwise) summed into one row per unit right away.
- At the step, each unit's squared norm is the sum over tensors of its Linear ghost norms
  (:mod:`fedskip.privacy.ghost_norms`) and its other rows' norms; the clip factor
  ``min(1, C / (‖G_u‖ + 1e-6))`` (Opacus' formula) weights each token of the unit in one
  book-keeping contraction per Linear layer. No second backward pass.

While taped, a trainable Linear's backward computes only its input gradient
(:class:`_TapedLinear`): the weight gradient is formed once, already clipped, by the
book-keeping contraction, so the extra work over a plain step is the norm pass, the noise and
the other layers' per-example rows (measured in ``benchmarks/dp_step.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from opacus.optimizers import DPOptimizer
from torch import Tensor, nn

from fedskip.errors import ModelError
from fedskip.privacy.ghost_norms import (
    bias_unit_norms2,
    linear_clipped_sum,
    linear_unit_norms2,
)
from fedskip.privacy.unit_batches import StepDraws


class _TapedLinear(torch.autograd.Function):
    """``linear(x, weight, bias)`` whose backward returns only the input gradient and passes
    the output gradient to ``keep``: autograd never forms the (unclipped, discarded) weight
    gradient of a taped layer."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, keep: Callable[[Tensor], None]
    ) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.keep = keep
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (weight,) = ctx.saved_tensors
        ctx.keep(grad)
        return (grad @ weight if ctx.needs_input_grad[0] else None), None, None, None


class _LinearRows:
    """One Linear layer's token rows of the current step: inputs, output gradients, units."""

    def __init__(self) -> None:
        self.a: list[Tensor] = []
        self.g: list[Tensor] = []
        self.rows: list[Tensor] = []

    def add(self, a: Tensor, g: Tensor, rows: Tensor) -> None:
        batch = a.shape[0]
        a = a.reshape(batch, -1, a.shape[-1])
        g = g.reshape(batch, -1, g.shape[-1])
        tokens = a.shape[1]
        a, g = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
        token_rows = rows.to(a.device).repeat_interleave(tokens)
        keep = g.ne(0).any(dim=1)  # padding: no loss reaches it, so it adds nothing
        if bool(keep.all()):  # nothing to drop: keep the rows without copying them
            self.a.append(a)
            self.g.append(g)
            self.rows.append(token_rows)
            return
        self.a.append(a[keep])
        self.g.append(g[keep])
        self.rows.append(token_rows[keep])

    def cat(self) -> tuple[Tensor, Tensor, Tensor]:
        if len(self.a) == 1:
            return self.a[0], self.g[0], self.rows[0]
        return torch.cat(self.a), torch.cat(self.g), torch.cat(self.rows)


class UnitGradientTape:
    """Forward/backward hooks on the trainable leaf modules of ``model`` recording, per
    micro-batch, what per-unit clipping needs (see the module docstring). ``fold(rows,
    num_units)`` after each backward pass; :meth:`clipped_sums` at the step; :meth:`cleanup`
    removes the hooks."""

    def __init__(self, model: nn.Module) -> None:
        from opacus.grad_sample import GradSampleModule  # registers Opacus' grad samplers
        from opacus.grad_sample.functorch import ft_compute_per_sample_gradient, prepare_layer
        from opacus.utils.module_utils import trainable_modules

        self.modules: list[nn.Module] = []
        self._samplers: dict[nn.Module, Callable[..., dict[Any, Tensor]]] = {}
        for _, module in trainable_modules(model):
            self.modules.append(module)
            if isinstance(module, nn.Linear):
                continue
            sampler = GradSampleModule.GRAD_SAMPLERS.get(type(module))
            if sampler is None:
                prepare_layer(module)
                sampler = ft_compute_per_sample_gradient
            self._samplers[module] = sampler
        self._inputs: dict[nn.Module, Tensor] = {}
        self._grads: dict[nn.Module, Tensor] = {}
        self._linear: dict[nn.Linear, _LinearRows] = {}
        self._other: dict[Tensor, Tensor] = {}  # per-unit rows [units, *shape]
        self.unit_norms2: dict[Tensor, Tensor] = {}
        """Each tensor's squared per-unit gradient norms of the last step (before clipping)."""
        self._handles = [
            m.register_forward_hook(self._capture)
            for m in self.modules
            if not isinstance(m, nn.Linear)
        ]
        for m in self.modules:
            if isinstance(m, nn.Linear):  # an instance attribute, removed by cleanup()
                vars(m)["forward"] = functools.partial(self._linear_forward, m)

    def _capture(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """Forward hook of a non-Linear trainable module: keep its input and, on the way back,
        the gradient at its output."""
        if not (torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad):
            return
        if not args or not isinstance(args[0], Tensor):
            raise ModelError(
                f"dp-sample-grads=fast: {type(module).__name__} was called without a positional "
                "input tensor; use dp-sample-grads=hooks for this model"
            )
        self._keep_input(module, args[0])
        output.register_hook(self._grad_keeper(module))

    def _keep_input(self, module: nn.Module, x: Tensor) -> None:
        if module in self._inputs:
            raise ModelError(
                f"dp-sample-grads=fast: trainable {type(module).__name__} runs twice in one "
                "forward pass (shared weights); use dp-sample-grads=hooks for this model"
            )
        self._inputs[module] = x.detach()

    def _grad_keeper(self, module: nn.Module) -> Callable[[Tensor], None]:
        """What keeps the gradient at ``module``'s output when the backward pass reaches it."""

        def keep(grad: Tensor) -> None:
            self._grads[module] = grad.detach()

        return keep

    def _linear_forward(self, module: nn.Linear, x: Tensor) -> Tensor:
        """A trainable Linear's forward while taped: the same output, but its backward
        computes only the input gradient and hands the output gradient to the tape (the
        clipped weight gradient is the book-keeping contraction at the step)."""
        if not torch.is_grad_enabled():
            return nn.functional.linear(x, module.weight, module.bias)
        self._keep_input(module, x)
        return _TapedLinear.apply(x, module.weight, module.bias, self._grad_keeper(module))

    def fold(self, rows: Tensor, num_units: int) -> None:
        """Take the last backward pass's rows: example ``i`` of the micro-batch belongs to unit
        ``rows[i]`` of the step (``num_units`` units in the step)."""
        for module in self.modules:
            x = self._inputs.pop(module, None)
            g = self._grads.pop(module, None)
            if x is None or g is None:
                continue
            if x.shape[0] != rows.numel():
                raise RuntimeError(
                    f"DP-SGD: {x.shape[0]} rows reached {type(module).__name__} for "
                    f"{rows.numel()} examples; each micro-batch must get one backward pass"
                )
            g = g * x.shape[0]  # the loss is the mean over the micro-batch's examples
            if isinstance(module, nn.Linear):
                self._linear.setdefault(module, _LinearRows()).add(x, g, rows)
                continue
            per_example = self._samplers[module](module, [x], g)
            for p, sample in per_example.items():
                if not p.requires_grad:
                    continue
                if p not in self._other:
                    self._other[p] = sample.new_zeros((num_units, *p.shape))
                self._other[p].index_add_(0, rows.to(sample.device), sample.to(p.dtype))

    def clipped_sums(self, num_units: int, clip_norm: float) -> dict[Tensor, Tensor]:
        """Each trainable tensor's sum over the step's units of the unit's gradient clipped
        to ``clip_norm`` as a whole (all tensors together); clears the step's rows."""
        linear = {m: rows.cat() for m, rows in self._linear.items()}
        per_tensor: dict[Tensor, Tensor] = {}
        for module, (a, g, rows) in linear.items():
            if module.weight.requires_grad:
                per_tensor[module.weight] = linear_unit_norms2(a, g, rows, num_units)
            if module.bias is not None and module.bias.requires_grad:
                per_tensor[module.bias] = bias_unit_norms2(g, rows, num_units)
        for p, per_unit in self._other.items():
            per_tensor[p] = per_unit.flatten(1).float().pow(2).sum(dim=1)
        self.unit_norms2 = {p: n.double().cpu() for p, n in per_tensor.items()}
        norms2 = sum(self.unit_norms2.values(), torch.zeros(num_units, dtype=torch.float64))
        factor = (clip_norm / (norms2.sqrt() + 1e-6)).clamp(max=1.0).float()
        sums: dict[Tensor, Tensor] = {}
        for module, (a, g, rows) in linear.items():
            weight, bias = linear_clipped_sum(a, g, factor.to(a.device)[rows])
            for p, clipped in ((module.weight, weight), (module.bias, bias)):
                if p is not None and p.requires_grad:
                    sums[p] = clipped.to(p.dtype)
        for p, per_unit in self._other.items():
            sums[p] = torch.einsum("u,u...->...", factor.to(per_unit), per_unit).to(p.dtype)
        self.clear()
        return sums

    def has_rows(self) -> bool:
        """Whether a forward pass has been recorded that :meth:`fold` has not taken yet."""
        return bool(self._inputs)

    def clear(self) -> None:
        self._inputs, self._grads, self._linear, self._other = {}, {}, {}, {}

    def cleanup(self) -> None:
        """Remove the hooks (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for m in self.modules:
            vars(m).pop("forward", None)
        self.clear()


class FastUnitDPOptimizer(DPOptimizer):
    """Opacus' ``DPOptimizer`` (noise, scaling, step hook, state) whose clipped sum comes from
    a :class:`UnitGradientTape` instead of ``p.grad_sample``; the same draw interface as
    :class:`fedskip.privacy.unit_batches.UnitDPOptimizer` for
    :class:`~fedskip.privacy.unit_batches.UnitBatches`."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, tape: UnitGradientTape, **kw: Any):
        super().__init__(optimizer, **kw)
        self.tape = tape
        self._step = StepDraws()
        self._row_of: dict[int, int] | None = None

    def begin_draw(self, units: list[int]) -> int:
        self._row_of = None
        return self._step.begin(units)

    def expect_rows(self, draw: int, slots: Tensor) -> None:
        self._step.expect(draw, slots)

    def _rows(self) -> dict[int, int]:
        """Row of each unit in the step (first-drawn order; a unit of several draws is one)."""
        if self._row_of is None:
            self._row_of = {u: row for row, u in enumerate(self._step.step_units())}
        return self._row_of

    def fold(self) -> None:
        if not self._step.pending or not self.tape.has_rows():
            return
        draw, slots = self._step.next_pending()
        row_of, units = self._rows(), self._step.draws[draw]
        rows = torch.tensor([row_of[units[s]] for s in slots.tolist()], dtype=torch.long)
        self.tape.fold(rows, len(row_of))

    @property
    def accumulated_iterations(self) -> int:
        return max(1, len(self._step.draws))

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool | None:
        self.fold()
        self._step.finish()
        sums = self.tape.clipped_sums(len(self._rows()), self.max_grad_norm)
        for p in self.params:
            p.summed_grad = sums.get(p, torch.zeros_like(p))
        self.add_noise()
        self.scale_grad()
        if self.step_hook:
            self.step_hook(self)
        self._step.clear()
        self._row_of = None
        self._is_last_step_skipped = False
        return True

    def zero_grad(self, set_to_none: bool = False) -> None:
        super().zero_grad(set_to_none)
        self.tape.clear()

    def unit_norms(self) -> Tensor:
        """Each unit's gradient norm (all trainable tensors) of the last step, before clipping."""
        norms2 = list(self.tape.unit_norms2.values())
        return torch.stack(norms2).sum(dim=0).sqrt() if norms2 else torch.zeros(0)
