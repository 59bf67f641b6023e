"""Client-level DP (DP-FedAvg): clip each hospital's update, add Gaussian noise to the aggregate
(the maths, Flower-free; the Flower strategy wrapper is :mod:`fedskip.fl.strategy.client_dp`).

What is protected, against whom: the global model released after every round is (ε, δ)-DP with
respect to the *whole contribution of one hospital* (all its notes at once) — against the other
hospitals and anyone who receives the model. The server that clips and noises is trusted (central
DP); with ``secagg=true`` it only sees the masked sum of already-clipped updates.

The mechanism is Flower's (``flwr.serverapp.strategy.DifferentialPrivacy*Clipping``, McMahan et
al. 2018; Andrew et al. 2021 for adaptive clipping): an update Δ = local − global is scaled to
L2 norm ≤ C, the unweighted mean of the m clipped updates gets N(0, (σ·C/m)²) per coordinate.
Here it works on *partial* states — only the tensors trained this round, matched by name, never
by position — and the noise comes from a secret generator (OS entropy), never from the run's
public ``seed``, which anyone holding the config knows.

Accounting: one release per round of the subsampled Gaussian mechanism (σ, q = fraction-train),
composed by :class:`fedskip.privacy.accounting.PrivacyAccountant` across rounds (and resumes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedskip.privacy.accounting import noise_multiplier_for

if TYPE_CHECKING:
    from fedskip.config import Config

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ClientDPSettings:
    """Client-level DP knobs (config keys noise-multiplier, clip-norm, delta, dp-clipping,
    target-epsilon, fraction-train, rounds)."""

    noise_multiplier: float  # σ of the model-update noise, in units of the clip norm
    clip_norm: float  # C: L2 bound of one client's update (initial value when adaptive)
    delta: float = 1e-5
    sample_rate: float = 1.0  # share of clients sampled per round (q of the accountant)
    adaptive: bool = False  # Andrew et al.: C follows the target quantile of update norms
    target_quantile: float = 0.5  # adaptive: share of updates meant to fit under C (unclipped)
    clip_norm_lr: float = 0.2  # adaptive: geometric learning rate of C

    def __post_init__(self) -> None:
        valid = self.clip_norm > 0 and 0 < self.delta < 1 and 0 < self.sample_rate <= 1
        if not valid or self.noise_multiplier < 0:  # users: the config's rules
            raise ValueError(
                "client-level DP needs clip_norm > 0, 0 < delta < 1, 0 < sample_rate <= 1 and "
                f"noise_multiplier >= 0, not {self}"
            )

    @classmethod
    def from_config(cls, cfg: Config) -> ClientDPSettings:
        """From a :class:`fedskip.config.Config`; with ``target-epsilon`` > 0, σ is the smallest
        noise keeping ``rounds`` releases at q = fraction-train within the target."""
        sigma = cfg.noise_multiplier
        if cfg.target_epsilon > 0:
            sigma = noise_multiplier_for(
                target_epsilon=cfg.target_epsilon,
                delta=cfg.delta,
                sample_rate=cfg.fraction_train,
                steps=cfg.rounds,
            )
        return cls(
            noise_multiplier=sigma,
            clip_norm=cfg.clip_norm,
            delta=cfg.delta,
            sample_rate=cfg.fraction_train,
            adaptive=cfg.dp_clipping == "adaptive",
        )


def update_of(local: Arrays, reference: Arrays) -> dict[str, np.ndarray]:
    """Δ = local − reference for every tensor of ``local`` (matched by name; float64)."""
    missing = [k for k in local if k not in reference]
    if missing:
        raise KeyError(f"update has tensors the global state lacks: {missing[:3]}")
    return {
        k: np.asarray(v, np.float64) - np.asarray(reference[k], np.float64)
        for k, v in local.items()
    }


def update_norm(update: Arrays) -> float:
    """L2 norm of all tensors of an update taken together (flat clipping)."""
    return math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in update.values()))


def clip_update(update: Arrays, clip_norm: float) -> tuple[dict[str, np.ndarray], bool]:
    """Scale ``update`` by min(1, C / ‖Δ‖); returns it and whether it was scaled down."""
    norm = update_norm(update)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: np.asarray(v) * scale for k, v in update.items()}, scale < 1.0


def clip_to_global(
    local: Arrays, reference: Arrays, clip_norm: float
) -> tuple[dict[str, np.ndarray], bool]:
    """``reference + clip(local − reference)``, in ``local``'s dtypes (what the server averages)."""
    clipped, was_clipped = clip_update(update_of(local, reference), clip_norm)
    out = {
        k: (np.asarray(reference[k], np.float64) + clipped[k]).astype(np.asarray(local[k]).dtype)
        for k in clipped
    }
    return out, was_clipped


def noise_std(noise_multiplier: float, clip_norm: float, num_clients: int) -> float:
    """Per-coordinate std of the noise on the mean of ``num_clients`` clipped updates: σ·C/m
    (the sensitivity of that mean to one client is C/m)."""
    if num_clients <= 0:
        raise ValueError("noise for an aggregate of no clients")
    return noise_multiplier * clip_norm / num_clients


def add_noise(arrays: Arrays, std: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each tensor plus i.i.d. N(0, std²) noise, in the tensor's dtype."""
    out = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        noise = rng.normal(0.0, std, size=value.shape) if std > 0 else 0.0
        out[key] = (value.astype(np.float64) + noise).astype(value.dtype)
    return out


def secret_rng(seed: int | None = None) -> np.random.Generator:
    """The noise generator: OS entropy, unless a ``seed`` is given (tests only)."""
    return np.random.default_rng(
        seed if seed is not None else int.from_bytes(os.urandom(16), "little")
    )


# ---------------------------------------------------------------------- adaptive clipping
def adaptive_noise(noise_multiplier: float, num_clients: int) -> tuple[float, float]:
    """Split σ between the clipped-count release and the update (Andrew et al., Thm 1):
    ``(count_std, update_sigma)`` with σ⁻² = update_sigma⁻² + (2·count_std)⁻², so the pair
    together costs exactly one release at σ (what the accountant composes).

    The count std is Flower's default m/20, raised to σ when m/20 is too small for σ (few
    clients): then the update noise grows by 15 % instead of the count noise being impossible.
    """
    if noise_multiplier == 0:
        return 0.0, 0.0
    count_std = max(num_clients / 20.0, noise_multiplier)
    update_sigma = (noise_multiplier**-2 - (2 * count_std) ** -2) ** -0.5
    return count_std, update_sigma


def next_clip_norm(
    clip_norm: float,
    unclipped: int,
    total: int,
    settings: ClientDPSettings,
    rng: np.random.Generator,
) -> float:
    """Andrew et al.'s geometric update C ← C·exp(−η(b̄ − γ)), where b̄ is the noised share of
    updates whose norm was ≤ C and γ the target quantile: C grows while too many updates are
    clipped and shrinks while too few are, converging to the γ-quantile of the update norms.

    (Flower 1.42's adaptive wrappers feed the share of *clipped* updates into the same formula,
    which drives C the wrong way — to 0 when most updates are clipped; fedskip follows the
    paper.)
    """
    count_std, _ = adaptive_noise(settings.noise_multiplier, total)
    noisy = unclipped + (rng.normal(0.0, count_std) if count_std > 0 else 0.0)
    fraction = noisy / total
    return clip_norm * math.exp(-settings.clip_norm_lr * (fraction - settings.target_quantile))
