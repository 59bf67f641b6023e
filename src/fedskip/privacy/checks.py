"""Which privacy settings go together, and loud warnings when one weakens a guarantee.

:func:`check_privacy_config` is called once per run (server side) before anything trains: it
returns the warnings for combinations that work but break an assumption of the accounting (each
also emitted through :func:`warn_loudly`, i.e. Python ``warnings`` *and* the ``fedskip.privacy``
logger, so it reaches both the console and the run log). Combinations that cannot work are
refused earlier, when the :class:`fedskip.config.Config` is built (its cross-field rules).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

LOG = logging.getLogger("fedskip.privacy")


class PrivacyWarning(UserWarning):
    """A setting that weakens or approximates a differential-privacy guarantee."""


def warn_loudly(message: str) -> None:
    """Emit ``message`` as a :class:`PrivacyWarning` and log it at WARNING level."""
    warnings.warn(message, PrivacyWarning, stacklevel=2)
    LOG.warning("PRIVACY: %s", message)


def check_privacy_config(cfg: Any) -> list[str]:
    """The privacy warnings for a resolved (valid) :class:`fedskip.config.Config`, each already
    emitted through :func:`warn_loudly`."""
    messages: list[str] = []
    if cfg.dp == "none":
        if cfg.target_epsilon > 0:
            messages.append("target-epsilon is set but dp=none: no differential privacy is applied")
    else:
        if cfg.target_epsilon <= 0 and cfg.noise_multiplier == 0:
            messages.append(
                f"dp={cfg.dp} with noise-multiplier=0: updates are clipped but NOT noised; ε is "
                "infinite (no privacy)"
            )
    if cfg.dp != "none" and cfg.layer_strategy == "importance":
        messages.append(
            f"dp={cfg.dp} with layer-strategy=importance: clients send layer scores (gradient "
            "norms on their training data) without noise; ε does not cover them"
        )
    if cfg.dp == "sample":
        messages += _sample_dp_warnings(cfg)
    if cfg.dp == "client":
        messages += _client_dp_warnings(cfg)
    for message in messages:
        warn_loudly(message)
    return messages


def _sample_dp_warnings(cfg: Any) -> list[str]:
    out = []
    if cfg.grad_accum > 1:
        out.append(
            f"grad-accum={cfg.grad_accum} with dp=sample: each optimizer step merges "
            f"{cfg.grad_accum} independent Poisson batches (a privacy unit drawn in several is "
            f"one DP sample of the step, clipped once) and is accounted at {cfg.grad_accum}× the "
            "sample rate, an upper bound on the merged rate: ε is somewhat pessimistic — use "
            "grad-accum=1 for a tight one"
        )
    return out


def _client_dp_warnings(cfg: Any) -> list[str]:
    out = []
    if cfg.fraction_train < 1.0:
        out.append(
            f"dp=client with fraction-train={cfg.fraction_train}: ε is accounted with Poisson "
            "client sampling at that rate (amplification by sampling), but fedskip samples a fixed "
            "number of clients per round from the run's seed, which is no secret to whoever holds "
            "the config; the reported ε is an approximation that assumes secret, random sampling"
        )
    if cfg.personalize != "none":
        out.append(
            f"dp=client with personalize={cfg.personalize}: the sites' personal tensors are "
            "trained without DP and never sent; ε covers the shared updates (the global model), "
            "not a site's own model or its export"
        )
    return out
