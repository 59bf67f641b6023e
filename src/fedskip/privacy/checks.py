"""Which privacy settings go together, and loud warnings when one weakens a guarantee.

:func:`check_privacy_config` is called once per run (server side) before anything trains: it
raises :class:`ConfigError` for combinations that cannot work and returns the warnings for
combinations that work but break an assumption of the accounting (each also emitted through
:func:`warn_loudly`, i.e. Python ``warnings`` *and* the ``fedskip.privacy`` logger, so it reaches
both the console and the run log).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from fedskip.errors import ConfigError

LOG = logging.getLogger("fedskip.privacy")

SECAGG_STRATEGIES = ("top", "bottom", "interleaved", "explicit", "rotating")
"""Layer strategies whose choice is the same for every client in a round (needed by SecAgg+,
whose masked vectors must have one shape for all clients)."""


class PrivacyWarning(UserWarning):
    """A setting that weakens or approximates a differential-privacy guarantee."""


def warn_loudly(message: str) -> None:
    """Emit ``message`` as a :class:`PrivacyWarning` and log it at WARNING level."""
    warnings.warn(message, PrivacyWarning, stacklevel=2)
    LOG.warning("PRIVACY: %s", message)


def check_privacy_config(cfg: Any) -> list[str]:
    """Validate the privacy keys of a resolved :class:`fedskip.config.Config`.

    Returns the warnings (already emitted); raises :class:`ConfigError` naming the key.
    """
    _check_secagg(cfg)
    messages: list[str] = []
    if cfg.dp == "none":
        if cfg.target_epsilon > 0:
            messages.append("target-epsilon is set but dp=none: no differential privacy is applied")
    else:
        if not 0 < cfg.delta < 1:
            raise ConfigError(
                f"config key 'delta': {cfg.delta!r} must be > 0 and < 1 with dp={cfg.dp}"
            )
        if cfg.clip_norm <= 0:
            raise ConfigError(f"config key 'clip-norm': must be > 0 with dp={cfg.dp}")
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


def _check_secagg(cfg: Any) -> None:
    if not cfg.secagg:
        return
    if cfg.layer_strategy not in SECAGG_STRATEGIES:
        raise ConfigError(
            f"config key 'layer-strategy': {cfg.layer_strategy!r} cannot be used with secagg=true "
            "(clients would score and pick different layers, but SecAgg+ sums vectors of one "
            f"shape); use one of {', '.join(SECAGG_STRATEGIES)}"
        )
    if cfg.secagg_shares < 3:
        raise ConfigError(
            f"config key 'secagg-shares': {cfg.secagg_shares} must be >= 3 for SecAgg+"
        )
    if not 2 <= cfg.secagg_threshold < cfg.secagg_shares:
        raise ConfigError(
            f"config key 'secagg-threshold': {cfg.secagg_threshold} must be >= 2 and < "
            f"secagg-shares ({cfg.secagg_shares})"
        )
    if cfg.dp == "client" and cfg.dp_clipping != "fixed":
        raise ConfigError(
            "config key 'dp-clipping': secagg=true with dp=client needs dp-clipping=fixed "
            "(clients clip before masking; adaptive clipping is not supported under SecAgg+)"
        )
    if cfg.compression != "none":
        raise ConfigError(
            "config key 'compression': must be none with secagg=true (SecAgg+ quantizes itself)"
        )


def _sample_dp_warnings(cfg: Any) -> list[str]:
    out = []
    if cfg.grad_accum > 1:
        out.append(
            f"grad-accum={cfg.grad_accum} with dp=sample: each optimizer step merges "
            f"{cfg.grad_accum} independent Poisson batches and is accounted as one batch at "
            f"{cfg.grad_accum}× the sample rate (Opacus' approximation; an example drawn twice "
            "is clipped twice) — use grad-accum=1 for an exact guarantee"
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
    return out
