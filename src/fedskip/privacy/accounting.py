"""Cumulative privacy accounting that survives rounds, processes and checkpoints.

What is protected, against whom: with sample-level DP (``dp=sample``) the accountant of one
hospital bounds what anyone who sees that hospital's model updates (the server, other hospitals,
whoever gets the final model) can learn about any single patient note in its training data; with
client-level DP (``dp=client``) the server-side accountant bounds what the released global model
reveals about whether one hospital took part at all.

The budget is *cumulative*: every DP-SGD step (or every noised aggregate) since the start of
training is composed. The state is a short history of ``(noise multiplier σ, sample rate q,
steps)`` segments — exactly what Opacus' accountants compose — kept as plain lists so it travels
in checkpoints (JSON) and in Flower's ``Context.state`` (a ``ConfigRecord``) and is restored, never
restarted, in the next round. ε is always reported at the configured δ.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from fedskip.errors import ConfigError, PrivacyBudgetExceeded

MECHANISMS = ("rdp", "prv")
"""Opacus accounting mechanisms supported: Rényi DP (default) and privacy random variables."""

MAX_NOISE_MULTIPLIER = 1e6

Segment = tuple[float, float, int]


class PrivacyAccountant:
    """Composes Gaussian-mechanism steps and reports (ε, δ) spent so far.

    A thin, serialisable front of an Opacus accountant (``opacus.accountants``): the maths is
    Opacus', the history is ours so it can be persisted and resumed.
    """

    def __init__(self, mechanism: str = "rdp", history: list[Segment] | None = None) -> None:
        if mechanism not in MECHANISMS:
            raise ConfigError(
                f"privacy accountant {mechanism!r} is not one of {', '.join(MECHANISMS)}"
            )
        self.mechanism = mechanism
        self._history: list[Segment] = []
        for sigma, q, steps in history or []:
            self.step(noise_multiplier=sigma, sample_rate=q, steps=steps)

    # ------------------------------------------------------------------ composition
    @property
    def history(self) -> list[Segment]:
        """``[(σ, q, steps), ...]`` in the order spent (consecutive equal (σ, q) are merged)."""
        return list(self._history)

    @property
    def steps(self) -> int:
        """Noised releases composed so far (DP-SGD steps or noised aggregates)."""
        return sum(s for _, _, s in self._history)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose ``steps`` releases of the subsampled Gaussian mechanism (σ, q)."""
        _check_step(noise_multiplier, sample_rate, steps)
        if steps == 0:
            return
        sigma, q = float(noise_multiplier), float(sample_rate)
        if self._history and self._history[-1][:2] == (sigma, q):
            self._history[-1] = (sigma, q, self._history[-1][2] + int(steps))
        else:
            self._history.append((sigma, q, int(steps)))

    def epsilon(self, delta: float) -> float:
        """ε spent so far at ``delta`` (0.0 before any step; inf when σ = 0 was used)."""
        return _epsilon(self.mechanism, self._history, delta)

    def epsilon_after(
        self, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
    ) -> float:
        """ε that would be spent at ``delta`` after ``steps`` more releases of (σ, q)."""
        trial = PrivacyAccountant(self.mechanism, self._history)
        trial.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        return trial.epsilon(delta)

    def optimizer_hook(self, sample_rate: float) -> Callable[[Any], None]:
        """A step hook for ``opacus.optimizers.DPOptimizer.attach_step_hook``: one composed step
        per noised optimizer step (sample rate × accumulated micro-batches, as Opacus does)."""

        def hook(optimizer: Any) -> None:
            self.step(
                noise_multiplier=optimizer.noise_multiplier,
                sample_rate=min(1.0, sample_rate * optimizer.accumulated_iterations),
            )

        return hook

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain lists of scalars: fits JSON and a Flower ``ConfigRecord`` unchanged."""
        return {
            "mechanism": self.mechanism,
            "noise_multipliers": [s for s, _, _ in self._history],
            "sample_rates": [q for _, q, _ in self._history],
            "steps": [n for _, _, n in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the history with a saved one (same mechanism)."""
        mechanism = str(state.get("mechanism", ""))
        if mechanism != self.mechanism:
            raise ConfigError(
                f"saved privacy accountant is {mechanism!r}, cannot resume it as {self.mechanism!r}"
            )
        sigmas, rates, steps = (
            list(state.get(k, [])) for k in ("noise_multipliers", "sample_rates", "steps")
        )
        if not len(sigmas) == len(rates) == len(steps):
            raise ConfigError("saved privacy accountant state is corrupt (list lengths differ)")
        self._history = []
        for sigma, q, n in zip(sigmas, rates, steps):
            self.step(noise_multiplier=float(sigma), sample_rate=float(q), steps=int(n))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PrivacyAccountant:
        accountant = cls(str(state.get("mechanism", "rdp")))
        accountant.load_state_dict(state)
        return accountant

    def __repr__(self) -> str:
        return f"PrivacyAccountant({self.mechanism!r}, steps={self.steps}, segments={len(self._history)})"


def _check_step(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise multiplier must be finite and >= 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def _epsilon(mechanism: str, history: list[Segment], delta: float) -> float:
    if not 0 < delta < 1:
        raise ConfigError(
            f"config key 'delta': {delta!r} must be > 0 and < 1 for differential privacy"
        )
    if not history:
        return 0.0
    if any(sigma == 0 for sigma, _, _ in history):
        return math.inf
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism)
    accountant.history = list(history)
    with warnings.catch_warnings():  # "optimal order is the smallest alpha" at huge ε
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=delta))


# ---------------------------------------------------------------------- planning
def sample_rate(batch_size: int, num_examples: int) -> float:
    """Poisson sampling rate q = batch_size / n (capped at 1): each example joins a batch with
    probability q, so a batch holds batch_size examples on average."""
    if num_examples <= 0:
        raise ValueError("sample rate of an empty dataset")
    return min(1.0, batch_size / num_examples)


def steps_per_epoch(rate: float) -> int:
    """Poisson batches per epoch: ``int(1/q)``, as Opacus' ``DPDataLoader`` draws."""
    return max(1, int(1 / rate))


def epsilon_for(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, mechanism: str = "rdp"
) -> float:
    """ε at ``delta`` after ``steps`` releases of the subsampled Gaussian mechanism (σ, q)."""
    accountant = PrivacyAccountant(mechanism)
    accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return accountant.epsilon(delta)


def noise_multiplier_for(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    mechanism: str = "rdp",
    spent: PrivacyAccountant | None = None,
    tolerance: float = 0.01,
) -> float:
    """Smallest σ (within ``tolerance`` in ε) such that ``steps`` more releases at rate q keep the
    total ε at ``delta`` at or below ``target_epsilon``, after what ``spent`` already composed.

    Without prior spending this is Opacus' ``get_noise_multiplier``; with it, the same bisection
    over the composed history. Raises :class:`PrivacyBudgetExceeded` when the budget is already
    spent and :class:`ConfigError` when no σ ≤ 1e6 reaches the target.
    """
    if target_epsilon <= 0:
        raise ConfigError(f"config key 'target-epsilon': {target_epsilon!r} must be > 0")
    if steps <= 0:
        raise ValueError("noise multiplier for zero steps")
    prior = spent if spent is not None and spent.steps else None
    if prior is None:
        return _opacus_noise_multiplier(
            target_epsilon, delta, sample_rate, steps, mechanism, tolerance
        )
    already = prior.epsilon(delta)
    if already >= target_epsilon:
        raise PrivacyBudgetExceeded(
            f"privacy budget spent: ε={already:.4f} at δ={delta:g} already reaches "
            f"target-epsilon={target_epsilon:g}; no further training is possible"
        )
    return _bisect_noise(prior, target_epsilon, delta, sample_rate, steps, tolerance)


def _opacus_noise_multiplier(
    target: float, delta: float, q: float, steps: int, mechanism: str, tolerance: float
) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    _epsilon(mechanism, [], delta)  # validates delta
    try:
        with warnings.catch_warnings():  # "optimal order is the largest alpha" while searching
            warnings.simplefilter("ignore", UserWarning)
            return float(
                get_noise_multiplier(
                    target_epsilon=target,
                    target_delta=delta,
                    sample_rate=q,
                    steps=steps,
                    accountant=mechanism,
                    epsilon_tolerance=tolerance,
                )
            )
    except ValueError:
        raise ConfigError(_unreachable(target, delta, q, steps)) from None


def _bisect_noise(
    prior: PrivacyAccountant, target: float, delta: float, q: float, steps: int, tolerance: float
) -> float:
    def eps(sigma: float) -> float:
        return prior.epsilon_after(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)

    low, high = 0.0, 10.0
    eps_high = math.inf
    while eps_high > target:
        high *= 2
        if high > MAX_NOISE_MULTIPLIER:
            raise ConfigError(_unreachable(target, delta, q, steps))
        eps_high = eps(high)
    while target - eps_high > tolerance:
        mid = (low + high) / 2
        value = eps(mid)
        if value < target:
            high, eps_high = mid, value
        else:
            low = mid
    return high


def _unreachable(target: float, delta: float, q: float, steps: int) -> str:
    return (
        f"config key 'target-epsilon': ε={target:g} at δ={delta:g} is unreachable for {steps} "
        f"steps at sample rate {q:.4g} (needs a noise multiplier above {MAX_NOISE_MULTIPLIER:g}); "
        "raise target-epsilon or lower rounds/local-epochs"
    )
