"""Client-level DP (DP-FedAvg) inside fedskip's layer-skipping strategy, on partial states.

:class:`ClientDPMixin` puts Flower's DP-FedAvg mechanism (``DifferentialPrivacyServerSide-
FixedClipping`` / ``...ClientSideFixedClipping`` / ``...ServerSideAdaptiveClipping``) into the
strategy, over the tensors that actually travel: updates are taken against the global tensors of
the same name (a reply holds only the selected layers), clipped as one vector, averaged without
example weights, and the noise lands only on the tensors trained this round. Flower's wrapper
classes cannot wrap fedskip's strategy as objects (they replace its round loop, which identifies
clients and resumes); the mechanism and its parameters are the same. ε per round comes from an RDP
accountant at q = fraction-train, kept in the strategy checkpoint. :func:`clip_update_mod` is the
client-side clipping mod for partial states (Flower's ``fixedclipping_mod`` requires the reply to
carry exactly the tensors it was sent, which layer skipping does not).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl.dp_sample import EPSILON
from fedskip.privacy.accounting import PrivacyAccountant
from fedskip.privacy.checks import warn_loudly
from fedskip.privacy.client_dp import (
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
CLIP_TOLERANCE = 1e-4
MEANINGFUL_CLIENTS = 50
"""Clients per round below which client-level DP is loudly flagged: the unit is a whole hospital,
and with few of them the noise that hides one (σ·C/m on the mean) either swamps the model or,
at a usable σ, leaves ε describing a handful of hospitals — not a patient-level guarantee."""
DP_CLIENTS = "dp-clients"
"""Relative slack when checking that a client-clipped update respects the clip norm (fp32)."""


def clip_update_mod(
    msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]
) -> Message:
    """Client-side clipping for partial states: when the train instruction carries Flower's
    ``clipping_norm`` key, each returned tensor set is replaced by ``sent + clip(returned − sent)``
    (one L2 norm over all returned tensors, matched by name). Otherwise a no-op."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    clip = _find_clip_norm(msg.content)
    if clip is None:
        return call_next(msg, ctxt)
    sent = {name: record for name, record in msg.content.array_records.items()}
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    for name, record in list(out.content.array_records.items()):
        reference = sent.get(name)
        local = {k: a.numpy() for k, a in record.items()}
        if reference is None or any(k not in reference for k in local):
            reason = f"clip_update_mod: reply record '{name}' holds tensors the client was not sent"
            log.error(reason)
            return Message(
                Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg
            )
        clipped, _ = clip_to_global(local, {k: reference[k].numpy() for k in local}, clip)
        out.content.array_records[name] = ArrayRecord({k: Array(v) for k, v in clipped.items()})
    return out


def _find_clip_norm(content: RecordDict) -> float | None:
    for record in content.config_records.values():
        if KEY_CLIPPING_NORM in record:
            return float(record[KEY_CLIPPING_NORM])  # type: ignore[arg-type]
    return None


class ClientDPMixin:
    """DP-FedAvg inside a :class:`fedskip.fl.strategy.LayerSkipMixin` strategy (module doc).

    ``side="server"``: the server clips each reply's update (Flower's server-side wrappers);
    ``side="client"``: clients clip (:func:`clip_update_mod`, or before SecAgg+ masking) and the
    server rejects a reply whose update exceeds the clip norm.
    """

    _global: ArrayRecord
    rounds: dict[int, Any]

    def setup_client_dp(
        self,
        settings: ClientDPSettings,
        *,
        side: str = "server",
        rng: np.random.Generator | None = None,
        target_epsilon: float = 0.0,
    ) -> None:
        """``target_epsilon`` > 0: refuse a round that would take ε past it."""
        if side not in ("server", "client"):
            raise ValueError(f"clipping side {side!r} is not server or client")
        if settings.adaptive and side == "client":
            raise ValueError("adaptive clipping is server-side only in fedskip")
        self.dp = settings
        self.dp_side = side
        self.dp_clip = settings.clip_norm
        self.dp_accountant = PrivacyAccountant()
        self.dp_rng = rng if rng is not None else secret_rng()
        self.dp_target_epsilon = target_epsilon
        self._dp_unclipped = 0
        self._dp_accepted = 0
        self.dp_warning = ""

    # -- round hooks (each calls the layer-skipping strategy underneath)
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._check_budget()
        if self.dp_side == "client":
            config[KEY_CLIPPING_NORM] = float(self.dp_clip)
        self._dp_unclipped = self._dp_accepted = 0
        return super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]

    def _check_train_reply(self, reply: Message) -> tuple[dict[str, np.ndarray], int, str]:
        arrays, weight, reason = super()._check_train_reply(reply)  # type: ignore[misc]
        if reason:
            return arrays, weight, reason
        reference = {k: self._global[k].numpy() for k in arrays}
        norm = update_norm(update_of(arrays, reference))
        if self.dp_side == "client":
            if norm > self.dp_clip * (1 + CLIP_TOLERANCE):
                return (
                    {},
                    0,
                    f"update norm {norm:.6g} exceeds clip-norm {self.dp_clip:.6g} (dp=client)",
                )
            clipped = arrays
        else:
            clipped, _ = clip_to_global(arrays, reference, self.dp_clip)
        self._dp_unclipped += int(norm <= self.dp_clip)
        self._dp_accepted += 1
        return clipped, 1, ""  # DP-FedAvg: unweighted mean, so one client moves it by ≤ C/m

    def server_step(
        self, server_round: int, previous: dict[str, np.ndarray], average: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        sigma = self._update_sigma(self._dp_accepted)
        std = noise_std(sigma, self.dp_clip, self._dp_accepted)
        log.info(
            "round %d: client-level DP noise std %.6g on %d tensors",
            server_round,
            std,
            len(average),
        )
        noised = add_noise(average, std, self.dp_rng)
        return super().server_step(server_round, previous, noised)  # type: ignore[misc]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
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
        record = self.rounds.get(server_round)
        if record is not None:
            record.train_metrics.update(released)
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
        state = super().state_dict()  # type: ignore[misc]
        state["client_dp"] = {
            "accountant": self.dp_accountant.state_dict(),
            "clip_norm": self.dp_clip,
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # type: ignore[misc]
        saved = state.get("client_dp")
        if saved:
            self.dp_accountant.load_state_dict(saved["accountant"])
            self.dp_clip = float(saved["clip_norm"])
