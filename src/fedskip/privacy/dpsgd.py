"""Unit-level DP-SGD (Opacus) over the trainable layers only: the engine's ``privacy`` hook.

What is protected, against whom: each hospital trains with DP-SGD, so everything that leaves it
(the selected layers' update each round, and every model built from them) is (ε, δ)-DP with
respect to any single *privacy unit* of that hospital's training data — one patient (all their
notes), one note, or one example (a sentence window), see :mod:`fedskip.privacy.units` — against
the server, the other hospitals and anyone who later receives the model. ε is "per patient (or
note) at δ". Frozen layers never change and need no per-sample gradients, so layer skipping makes
DP-SGD cheaper as well.

Mechanics (:mod:`fedskip.privacy.unit_batches`): Poisson sampling over units (sample rate
q = batch_size / units: ``batch-size`` is the expected number of units per step), the drawn
units' examples in micro-batches of at most ``batch-size`` examples; per-example gradients by
Opacus hooks on the trainable modules (``grad_sample_mode`` "hooks", falling back to functorch
for modules without a hand-written sampler such as ``LlamaRMSNorm``; or "functorch" for all),
summed per unit; flat per-unit clipping to ``clip_norm`` C, Gaussian noise N(0, (σ·C)²) on the
summed clipped gradients, average over the expected units per step. The loss is replaced by the
mean over examples of each example's *own* mean loss: Hugging Face's token-classification loss
averages over all tokens of the batch, which would make one example's gradient depend on the
others' lengths.

The accountant (:class:`fedskip.privacy.accounting.PrivacyAccountant`) is cumulative: pass the
same one (or its ``state_dict``) every round; it is never re-created per round.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedskip.errors import ConfigError, PrivacyBudgetExceeded
from fedskip.privacy.accounting import (
    PrivacyAccountant,
    noise_multiplier_for,
    sample_rate,
    steps_per_epoch,
)
from fedskip.privacy.checks import warn_loudly
from fedskip.privacy.dpsgd_support import (
    check_dp_support,
    check_optimizer,
    device_of,
    loss_hook,
    per_example_embedding_inputs,
    per_example_mean_loss,
)

if TYPE_CHECKING:
    from fedskip.config import Config

__all__ = [
    "DPSGD",
    "DPSGDSettings",
    "GRAD_SAMPLE_MODES",
    "check_dp_support",
    "per_example_mean_loss",
]

GRAD_SAMPLE_MODES = ("fast", "hooks", "functorch")
"""How per-unit gradients are clipped (config key ``dp-sample-grads``): ``fast`` — ghost norms
and book-keeping for Linear layers, Opacus per-example gradients for the rest
(:mod:`fedskip.privacy.fast_clipping`); ``hooks`` / ``functorch`` — Opacus per-example gradients
for every trainable layer, summed per unit (the reference). Opacus' "ew" (expanded weights) does
not work on Hugging Face models (keyword-argument calls) and its "ghost" clips single rows, not
units of several examples."""

CROWDED_STEP_RATE = 0.5
"""Accounted sample rate of one step (q × grad-accum, capped at 1) from which :class:`DPSGD`
warns that a site has too few privacy units for its batch: a step then draws half or more of
the site, there are at most two noised steps per epoch and sampling amplifies almost nothing."""


@dataclass(frozen=True)
class DPSGDSettings:
    """DP-SGD knobs (config keys noise-multiplier, clip-norm, delta, target-epsilon)."""

    noise_multiplier: float = 1.0  # σ; ignored when target_epsilon > 0
    clip_norm: float = 1.0  # C: per-example L2 clip
    delta: float = 1e-5  # δ of (ε, δ)
    target_epsilon: float = 0.0  # > 0: derive σ so the planned training spends at most this ε
    planned_epochs: int = 1  # epochs the budget must cover (rounds × local-epochs when federated)
    round_epochs: int = 0  # epochs per train() call, checked against the budget first; 0 = off
    grad_accum: int = 1  # Poisson draws per optimizer step (merged per unit, accounted at k·q)
    unit: str = "example"  # config dp-unit: auto, patient, note or example (see use_units)
    mechanism: str = "rdp"  # Opacus accountant
    grad_sample_mode: str = "fast"  # config dp-sample-grads, see GRAD_SAMPLE_MODES
    step_report: bool = False  # config dp-step-report: keep DPSGD.step_report's statistics
    noise_seed: int | None = None  # tests/benchmarks only: reproducible noise; None = OS entropy

    def __post_init__(self) -> None:
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(
                f"DP-SGD grad_sample_mode {self.grad_sample_mode!r} is not one of "
                f"{', '.join(GRAD_SAMPLE_MODES)} (Hugging Face models need keyword-argument calls)"
            )
        if self.clip_norm <= 0 or not 0 < self.delta < 1:  # users: the config's rules
            raise ValueError(f"DP-SGD needs clip_norm > 0 and 0 < delta < 1, not {self}")
        if self.planned_epochs < 1:
            raise ValueError("planned_epochs must be >= 1")
        from fedskip.privacy.units import DP_UNITS

        if self.unit not in DP_UNITS:
            raise ConfigError(
                f"config key 'dp-unit': {self.unit!r} is not one of {', '.join(DP_UNITS)}"
            )

    @classmethod
    def from_config(cls, cfg: Config, *, federated: bool = True) -> DPSGDSettings:
        """Settings from a :class:`fedskip.config.Config`; the budget covers ``rounds ×
        local-epochs`` (federated) or ``epochs`` (centralized / local-only) epochs."""
        epochs = cfg.rounds * cfg.local_epochs if federated else cfg.epochs
        return cls(
            noise_multiplier=cfg.noise_multiplier,
            clip_norm=cfg.clip_norm,
            delta=cfg.delta,
            target_epsilon=cfg.target_epsilon,
            planned_epochs=epochs,
            round_epochs=cfg.local_epochs if federated else cfg.epochs,
            grad_accum=cfg.grad_accum,
            unit=cfg.dp_unit,
            grad_sample_mode=cfg.dp_sample_grads,
            step_report=cfg.dp_step_report,
        )


class DPSGD:
    """The engine's ``privacy`` hook: ``attach`` before training, ``after_step`` after each step.

    One instance per client; its :class:`PrivacyAccountant` keeps composing across rounds
    (persist :meth:`state_dict` between rounds / processes and restore with
    :meth:`load_state_dict`). ``epsilon()`` is ε spent at ``settings.delta``.
    """

    def __init__(
        self,
        settings: DPSGDSettings,
        *,
        accountant: PrivacyAccountant | None = None,
        known_steps: int = 0,
    ) -> None:
        """``known_steps``: DP-SGD steps this client is on record (at the server) as having
        composed already; if its own accountant holds fewer — its node state was lost, e.g. a
        resumed run on fresh nodes — the missing steps are composed before training (each round
        of a client composes the same (σ, q) segment, so they are reconstructed exactly)."""
        self.settings = settings
        self.accountant = (
            accountant if accountant is not None else PrivacyAccountant(settings.mechanism)
        )
        self.known_steps = known_steps
        self.noise_multiplier: float | None = (
            None if settings.target_epsilon > 0 else settings.noise_multiplier
        )
        self.sample_rate: float | None = None
        self.planned_steps = 0
        self._safe_steps = math.inf  # total composed steps known to stay within target-epsilon
        self._optimizer: Any = None
        self._noised_since_check = 0
        self._rng_calls = 0
        self._units: list[int] | None = None
        self.unit = "example"  # the resolved privacy unit of the last attach
        self.num_units = 0  # privacy units at this client (the n of q = batch / n)
        self._crowded_warned: set[tuple[int, int]] = set()  # (units, batch) already warned of
        self._step_stats: list[tuple[float, float, float, float]] = []  # see step_report()
        if settings.target_epsilon <= 0 and settings.noise_multiplier == 0:
            warn_loudly(
                "DP-SGD with noise-multiplier=0: gradients are clipped but not noised (ε = inf)"
            )
        if settings.grad_accum > 1:
            warn_loudly(
                f"DP-SGD with grad-accum={settings.grad_accum}: a step merges that many Poisson "
                "batches (a unit drawn in several counts once) and is accounted at the multiplied "
                "sample rate, an upper bound"
            )

    # ------------------------------------------------------------------ engine hook
    def use_units(self, unit: str, units: Sequence[int]) -> None:
        """Group the next training call's examples into privacy units: ``units[i]`` is example
        ``i``'s unit (0, 1, ...); ``unit`` names them (patient, note). Without this call every
        example is its own unit. See :func:`fedskip.privacy.units.units_for`."""
        self.unit, self._units = unit, list(units)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: Any) -> Any:
        """Make (model, optimizer, loader) private; returns the same model object (hooked), a
        unit-level Opacus ``DPOptimizer`` and a loader of Poisson-sampled units' micro-batches."""
        from opacus.grad_sample.utils import prepare_module

        from fedskip.privacy.fast_clipping import FastUnitDPOptimizer, UnitGradientTape
        from fedskip.privacy.unit_batches import UnitBatches, UnitDPOptimizer

        self.detach(model)
        model.train()  # Opacus computes per-sample gradients only in train mode
        check_dp_support(model, self.settings.grad_sample_mode)
        check_optimizer(model, optimizer)
        dataset = data_loader.dataset
        units = self._units if self._units is not None else list(range(len(dataset)))
        if len(units) != len(dataset):
            raise ValueError(f"DP-SGD: {len(units)} unit ids for {len(dataset)} examples")
        if self._units is None:
            self.unit = "example"
        self.num_units = n = max(units, default=-1) + 1
        batch_size = int(data_loader.batch_size or 1)
        q = sample_rate(batch_size, n)
        self._plan(q)
        self._warn_if_crowded(n, batch_size, q)
        if self.settings.round_epochs:  # refuse the whole call before any weight changes
            self.check_round(n, batch_size, self.settings.round_epochs)
        # Opacus' backward hook on the lowest trainable block sees no input gradient when the
        # blocks below are frozen (layer skipping): torch warns, the per-sample gradients are right.
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")
        handles = [model.register_forward_hook(loss_hook, with_kwargs=True)]
        handles += per_example_embedding_inputs(model)
        expected = max(1, round(q * n))  # expected units per Poisson draw
        common: dict[str, Any] = {
            "noise_multiplier": float(self.noise_multiplier or 0.0),
            "max_grad_norm": self.settings.clip_norm,
            "expected_batch_size": expected,
            "loss_reduction": "mean",
            "generator": self._generator("noise", device_of(optimizer)),  # noise is drawn there
        }
        dp_optimizer: UnitDPOptimizer | FastUnitDPOptimizer
        if self.settings.grad_sample_mode == "fast":
            hooks: Any = UnitGradientTape(model)
            dp_optimizer = FastUnitDPOptimizer(optimizer, tape=hooks, **common)
        else:
            hooks = prepare_module(
                model,
                grad_sample_mode=self.settings.grad_sample_mode,
                wrap_model=False,
                batch_first=True,
                loss_reduction="mean",
            )
            dp_optimizer = UnitDPOptimizer(optimizer, **common)
        vars(model)["_fedskip_dp_hooks"] = (hooks, handles)  # a plain attribute
        dp_optimizer.attach_step_hook(self._on_noised_step)
        self._optimizer = dp_optimizer
        self._step_stats = []
        loader = UnitBatches(
            dataset,
            units,
            sample_rate=q,
            micro_batch=batch_size,
            collate_fn=data_loader.collate_fn,
            generator=self._generator("sampling"),
            optimizer=dp_optimizer,
            on_empty=self._empty_step,
            draws_per_step=self.settings.grad_accum,
        )
        return model, dp_optimizer, loader

    def after_step(self) -> None:
        """Check that the optimizer step just taken was a noised DP step (one composed step)."""
        if self._noised_since_check != 1:
            raise RuntimeError(
                f"DP-SGD: {self._noised_since_check} noised steps since the last optimizer step; "
                "the engine must step the optimizer returned by attach() exactly once per step"
            )
        self._noised_since_check = 0

    def detach(self, model: nn.Module) -> None:
        """Remove the per-example-gradient and loss hooks from ``model`` (safe to call twice)."""
        attached = getattr(model, "_fedskip_dp_hooks", None)
        if attached is not None:
            hooks, handles = attached
            hooks.cleanup()
            for handle in handles:
                handle.remove()
            del model._fedskip_dp_hooks

    # ------------------------------------------------------------------ accounting
    def epsilon(self) -> float:
        """ε spent so far (all rounds) at ``settings.delta``."""
        return self.accountant.epsilon(self.settings.delta)

    def check_round(self, num_units: int, batch_size: int, epochs: int) -> None:
        """Raise :class:`PrivacyBudgetExceeded` *before* training when a round of ``epochs`` over
        ``num_units`` privacy units would take the total past ``target-epsilon`` (no-op without
        a target)."""
        if self.settings.target_epsilon <= 0 or num_units == 0:
            return
        q = sample_rate(batch_size, num_units)
        self._plan(q)
        steps = epochs * self._steps_per_epoch(q)
        if self.accountant.steps + steps <= self._safe_steps:
            return
        eps = self.accountant.epsilon_after(
            noise_multiplier=float(self.noise_multiplier or 0.0),
            sample_rate=self._step_rate(q),
            steps=steps,
            delta=self.settings.delta,
        )
        if eps > self.settings.target_epsilon:
            raise PrivacyBudgetExceeded(self._budget_message(eps, "this round"))

    def _warn_if_crowded(self, num_units: int, batch_size: int, q: float) -> None:
        """Warn (once per site size and batch) when a step expects half or more of the site's
        privacy units (:data:`CROWDED_STEP_RATE`): DP-SGD then has almost no steps and no
        amplification, and its noise swamps the few units it averages — the run trains but
        learns little (the paper suite's first privacy group, 38–118 training patients per
        site with batch-size 64 × grad-accum 4, scored F1 0.05 after a round)."""
        rate = self._step_rate(q)
        if rate < CROWDED_STEP_RATE or (num_units, batch_size) in self._crowded_warned:
            return
        self._crowded_warned.add((num_units, batch_size))
        unit, expected = self.unit, batch_size * self.settings.grad_accum
        warn_loudly(
            f"DP-SGD: this site has {num_units} privacy units ({unit}s) and a step expects "
            f"batch-size × grad-accum = {expected} of them: each step samples every {unit} "
            f"with probability up to {rate:.2f}, so an epoch has {self._steps_per_epoch(q)} noised "
            "step(s), sampling amplifies almost nothing and the noise swamps so few units. Use "
            f"batch-size × grad-accum of at most {max(1, num_units // 4)} (a quarter of the "
            f"site's {unit}s) or more {unit}s per site"
        )

    def _plan(self, q: float) -> None:
        """Fix σ (and the step allowance) for sample rate ``q`` — derived from target-epsilon once
        and kept for later rounds unless the data (and so q) changes — then restore lost steps."""
        if not (self.sample_rate == q and self.noise_multiplier is not None):
            self.sample_rate = q
            if self.settings.target_epsilon > 0:
                self._plan_noise(q)
        self._restore_lost_steps(q)

    def _plan_noise(self, q: float) -> None:
        per_epoch = self._steps_per_epoch(q)
        total = self.settings.planned_epochs * per_epoch
        remaining = max(total - self.accountant.steps, per_epoch)
        self.noise_multiplier = noise_multiplier_for(
            target_epsilon=self.settings.target_epsilon,
            delta=self.settings.delta,
            sample_rate=self._step_rate(q),
            steps=remaining,
            mechanism=self.accountant.mechanism,
            spent=self.accountant,
        )
        self.planned_steps = self.accountant.steps + remaining
        self._safe_steps = self.planned_steps

    def _restore_lost_steps(self, q: float) -> None:
        missing = self.known_steps - self.accountant.steps
        if missing <= 0:
            return
        sigma, rate = float(self.noise_multiplier or 0.0), self._step_rate(q)
        warn_loudly(
            f"DP-SGD: this node's accountant holds {self.accountant.steps} steps but the server "
            f"recorded {self.known_steps} (node state lost, e.g. a resumed run); composing the "
            f"missing {missing} steps at σ={sigma:.4g}, q={rate:.4g} before training"
        )
        self.accountant.step(noise_multiplier=sigma, sample_rate=rate, steps=missing)

    def step_rate(self) -> float:
        """Accounted sample rate of one optimizer step (0 before the first attach)."""
        return self._step_rate(self.sample_rate) if self.sample_rate else 0.0

    def steps_per_round(self) -> int:
        """Noised steps one ``train()`` call of ``round_epochs`` composes (0 before attach)."""
        if not self.sample_rate:
            return 0
        return self.settings.round_epochs * self._steps_per_epoch(self.sample_rate)

    def _steps_per_epoch(self, q: float) -> int:
        return math.ceil(steps_per_epoch(q) / self.settings.grad_accum)

    def _step_rate(self, q: float) -> float:
        return min(1.0, q * self.settings.grad_accum)

    def _on_noised_step(self, optimizer: Any) -> None:
        """DPOptimizer step hook: runs after noising, *before* the weights change, so a step that
        would exceed the budget is refused and nothing of it is released."""
        rate = min(1.0, float(self.sample_rate or 1.0) * optimizer.accumulated_iterations)
        sigma = float(optimizer.noise_multiplier)
        target = self.settings.target_epsilon
        if target > 0 and self.accountant.steps + 1 > self._safe_steps:
            eps = self.accountant.epsilon_after(
                noise_multiplier=sigma, sample_rate=rate, steps=1, delta=self.settings.delta
            )
            if eps > target:
                raise PrivacyBudgetExceeded(self._budget_message(eps, "the next step"))
        self.accountant.step(noise_multiplier=sigma, sample_rate=rate)
        self._noised_since_check += 1
        if self.settings.step_report:  # statistics of the data: only when asked for
            self._record_step(optimizer, sigma)

    def _record_step(self, optimizer: Any, sigma: float) -> None:
        """Signal and noise of the step just noised (see :meth:`step_report`)."""
        params = list(optimizer.params)
        signal = math.sqrt(sum(float(torch.linalg.vector_norm(p.summed_grad)) ** 2 for p in params))
        noise = sigma * self.settings.clip_norm * math.sqrt(sum(p.numel() for p in params))
        norms = optimizer.unit_norms()
        clipped = float((norms > self.settings.clip_norm).double().mean()) if len(norms) else 0.0
        median = float(norms.median()) if len(norms) else 0.0
        self._step_stats.append((signal, noise, clipped, median))

    def step_report(self) -> dict[str, float]:
        """Means over the noised steps of the last ``train()`` call that drew a unit:
        ``signal_norm`` ‖Σ_u clipped unit gradient‖ (before noise), ``noise_norm`` σ·C·√d, the
        norm of the Gaussian noise added to that sum (d = trainable coordinates),
        ``clipped_share`` (units whose gradient norm exceeded ``clip-norm``) and ``unit_norm``
        (median unit gradient norm). Empty before any step and without
        ``settings.step_report`` (config key ``dp-step-report``). Diagnostics of the released
        step, computed on the client: they describe the mechanism, not the data, and are
        not covered by ε (they are averages over the step's clipped units)."""
        stats = [s for s in self._step_stats if s[3] > 0]
        if not stats:
            return {}
        names = ("signal_norm", "noise_norm", "clipped_share", "unit_norm")
        return {name: sum(s[i] for s in stats) / len(stats) for i, name in enumerate(names)}

    def _empty_step(self) -> None:
        """A step that drew no unit is still one noised release: apply a noise-only step (the
        model cannot run a zero-example batch, so the engine never sees it)."""
        self._optimizer.step()  # UnitDPOptimizer: zero units drawn, only noise
        self._optimizer.zero_grad(set_to_none=True)
        self._noised_since_check = 0

    def _budget_message(self, eps: float, what: str) -> str:
        return (
            f"privacy budget: {what} would raise ε to {eps:.4f} at δ={self.settings.delta:g}, above "
            f"target-epsilon={self.settings.target_epsilon:g} (spent so far: ε={self.epsilon():.4f} "
            f"over {self.accountant.steps} steps); training stops here"
        )

    def _generator(self, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
        """Noise and sampling randomness must be secret: seeded from OS entropy, never from the
        run's shared ``seed`` (the server knows it and could regenerate the noise). A
        ``noise_seed`` (tests) still yields a fresh stream per call and per composed step count."""
        self._rng_calls += 1
        if self.settings.noise_seed is None:
            seed = int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1)
        else:
            mix = f"{self.settings.noise_seed}:{purpose}:{self.accountant.steps}:{self._rng_calls}"
            seed = int.from_bytes(hashlib.sha256(mix.encode()).digest()[:8], "little") >> 1
        return torch.Generator(device=device).manual_seed(seed)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Flat scalars/lists (JSON- and ConfigRecord-ready): accountant history plus the plan."""
        state = self.accountant.state_dict()
        state.update(
            plan_noise_multiplier=float(self.noise_multiplier or 0.0),
            plan_sample_rate=float(self.sample_rate or 0.0),
            plan_steps=int(self.planned_steps),
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the accountant history and (with target-epsilon) the planned σ."""
        self.accountant.load_state_dict(state)
        if self.settings.target_epsilon > 0 and float(state.get("plan_sample_rate", 0.0)) > 0:
            self.noise_multiplier = float(state["plan_noise_multiplier"])
            self.sample_rate = float(state["plan_sample_rate"])
            self.planned_steps = int(state.get("plan_steps", 0))
            self._safe_steps = self.planned_steps


def local_dpsgd(cfg: Config) -> DPSGD | None:
    """The DP-SGD hook of a non-federated run (centralized / local-only) for ``cfg``: None
    unless ``dp=sample`` (the config refuses ``dp=client`` without a federation). The budget
    covers ``epochs``."""
    return DPSGD(DPSGDSettings.from_config(cfg, federated=False)) if cfg.dp == "sample" else None
