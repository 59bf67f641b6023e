"""Client-level DP (DP-FedAvg) around fedskip's layer-skipping strategy, on partial states.

:class:`ClientDPStrategy` wraps a fedskip strategy as Flower's DP-FedAvg wrappers
(``DifferentialPrivacyServerSideFixedClipping`` / ``...ClientSideFixedClipping`` /
``...ServerSideAdaptiveClipping``) wrap a Flower one, with the same mechanism and parameters, over
the tensors that actually travel: updates are taken against the global tensors of the same name
(a reply holds only the selected layers), clipped as one vector, averaged without example
weights, and the noise lands only on the tensors trained this round — on the mean, before a
server optimizer (FedAdam / FedYogi) steps. Flower's wrappers themselves cannot be used: they
clip whole replies by position against the whole model. ε per round comes from an RDP
accountant at q = fraction-train, kept in the strategy checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
)
from flwr.serverapp import Grid

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl.dpsgd_node import EPSILON
from fedskip.fl.flower_compat import KEY_CLIPPING_NORM
from fedskip.fl.strategy.core import LayerSkipStrategy, UpdateRule
from fedskip.fl.strategy.wrapper import StrategyWrapper
from fedskip.privacy.accounting import PrivacyAccountant
from fedskip.privacy.checks import warn_loudly
from fedskip.privacy.client_level import (
    ClientDPSettings,
    adaptive_noise,
    add_noise,
    clip_to_global,
    next_clip_norm,
    noise_std,
    secret_rng,
    update_norm,
    update_of,
)

log = logging.getLogger(__name__)

CLIP_NORM = "dp-clip-norm"
"""Round-metric key: the clip norm C used this round (adaptive clipping moves it between rounds)."""
DP_CLIENTS = "dp-clients"
"""Round-metric key: how many clipped updates the round's noised mean averaged (m in σ·C/m)."""
CLIP_TOLERANCE = 1e-4
"""Relative slack when checking that a client-clipped update respects the clip norm (fp32)."""
MEANINGFUL_CLIENTS = 50
"""Clients per round below which client-level DP is loudly flagged: the unit is a whole hospital,
and with few of them the noise that hides one (σ·C/m on the mean) either swamps the model or,
at a usable σ, leaves ε describing a handful of hospitals — not a patient-level guarantee."""


class ClientDPStrategy(StrategyWrapper):
    """DP-FedAvg around a fedskip strategy (module doc), as an :class:`UpdateRule` handed to
    the wrapped strategy's aggregation: each accepted update is clipped (or checked) and weighs
    1, and the mean gets the Gaussian noise before the server step.

    ``side="server"``: the server clips each reply's update (Flower's server-side wrappers);
    ``side="client"``: clients clip (before SecAgg+ masking) and the
    server rejects a reply whose update exceeds the clip norm. ``target_epsilon`` > 0: refuse a
    round that would take ε past it.
    """

    def __init__(
        self,
        strategy: LayerSkipStrategy | StrategyWrapper,
        settings: ClientDPSettings,
        *,
        side: str = "server",
        rng: np.random.Generator | None = None,
        target_epsilon: float = 0.0,
    ) -> None:
        if side not in ("server", "client"):
            raise ValueError(f"clipping side {side!r} is not server or client")
        if settings.adaptive and side == "client":
            raise ValueError("adaptive clipping is server-side only in fedskip")
        super().__init__(strategy)
        self.dp = settings
        self.dp_side = side
        self.dp_clip = settings.clip_norm
        self.dp_accountant = PrivacyAccountant()
        self.dp_rng = rng if rng is not None else secret_rng()
        self.dp_target_epsilon = target_epsilon
        self._dp_unclipped = 0
        self._dp_accepted = 0
        self.dp_warning = ""

    # -- round hooks (each calls the wrapped strategy)
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._check_budget()
        if self.dp_side == "client":
            config[KEY_CLIPPING_NORM] = float(self.dp_clip)
        self._dp_unclipped = self._dp_accepted = 0
        return super().configure_train(server_round, arrays, config, grid)

    def admit(
        self, arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float | None, str]:
        """Clip (server side) or check (client side) one validated update; weight 1."""
        norm = update_norm(update_of(arrays, reference))
        if self.dp_side == "client":
            if norm > self.dp_clip * (1 + CLIP_TOLERANCE):
                reason = f"update norm {norm:.6g} exceeds clip-norm {self.dp_clip:.6g} (dp=client)"
                return {}, None, reason
            clipped = arrays
        else:
            clipped, _ = clip_to_global(arrays, reference, self.dp_clip)
        self._dp_unclipped += int(norm <= self.dp_clip)
        self._dp_accepted += 1
        return clipped, 1.0, ""  # DP-FedAvg: unweighted mean, so one client moves it by ≤ C/m

    def release(self, server_round: int, average: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The mean plus N(0, (σC/m)²) on every tensor trained this round."""
        sigma = self._update_sigma(self._dp_accepted)
        std = noise_std(sigma, self.dp_clip, self._dp_accepted)
        log.info(
            "round %d: client-level DP noise std %.6g on %d tensors",
            server_round,
            std,
            len(average),
        )
        return add_noise(average, std, self.dp_rng)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message], *, rule: UpdateRule | None = None
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if rule is not None:
            raise ValueError("client-level DP cannot be combined with another update rule")
        arrays, metrics = super().aggregate_train(server_round, replies, rule=self)
        if arrays is None:  # nothing released this round: nothing to account
            return arrays, metrics
        self.dp_accountant.step(
            noise_multiplier=self.dp.noise_multiplier, sample_rate=self.dp.sample_rate
        )
        used_clip = self.dp_clip
        if self.dp.adaptive:
            self.dp_clip = next_clip_norm(
                self.dp_clip, self._dp_unclipped, self._dp_accepted, self.dp, self.dp_rng
            )
        eps = self.dp_accountant.epsilon(self.dp.delta)
        self._warn_few_clients(server_round, self._dp_accepted)
        metrics = metrics if metrics is not None else MetricRecord()
        released = {CLIP_NORM: used_clip, DP_CLIENTS: float(self._dp_accepted),
                    **({EPSILON: eps} if math.isfinite(eps) else {})}  # fmt: skip
        metrics.update(released)
        self.record(server_round).train_metrics.update(released)
        return arrays, metrics

    # -- helpers
    def _warn_few_clients(self, server_round: int, clients: int) -> None:
        """Loud warning (log, and ``dp_warning`` in the summary) for a round that aggregated
        fewer than :data:`MEANINGFUL_CLIENTS` clients."""
        if clients >= MEANINGFUL_CLIENTS:
            return
        self.dp_warning = (
            f"dp=client: round {server_round} aggregated {clients} client(s), fewer than "
            f"{MEANINGFUL_CLIENTS}; client-level DP protects whole hospitals and is not "
            "meaningful with so few (ε is per hospital, not per patient; use dp=sample for "
            "patients)"
        )
        warn_loudly(self.dp_warning)

    def _update_sigma(self, num_clients: int) -> float:
        if self.dp.adaptive:
            return adaptive_noise(self.dp.noise_multiplier, num_clients)[1]
        return self.dp.noise_multiplier

    def _check_budget(self) -> None:
        """Refuse a round that would push ε past ``target`` (resumed runs with more rounds)."""
        target = self.dp_target_epsilon
        if target <= 0:
            return
        eps = self.dp_accountant.epsilon_after(
            noise_multiplier=self.dp.noise_multiplier,
            sample_rate=self.dp.sample_rate,
            steps=1,
            delta=self.dp.delta,
        )
        if eps > target:
            raise PrivacyBudgetExceeded(
                f"privacy budget: the next round would raise ε to {eps:.4f} at δ={self.dp.delta:g}, "
                f"above target-epsilon={target:g} (spent: {self.dp_accountant.epsilon(self.dp.delta):.4f} "
                f"over {self.dp_accountant.steps} rounds); training stops here"
            )

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["client_dp"] = {
            "accountant": self.dp_accountant.state_dict(),
            "clip_norm": self.dp_clip,
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("client_dp")
        if saved:
            self.dp_accountant.load_state_dict(saved["accountant"])
            self.dp_clip = float(saved["clip_norm"])
