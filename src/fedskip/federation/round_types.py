"""Round plans, round records and deterministic client sampling (Flower-free)."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fedskip.errors import FedskipError


@dataclass(frozen=True)
class RoundPlan:
    """What is trained in one round: block indices (layer skipping) and tensor names."""

    layers: list[int]
    train_keys: list[str]


class Planner(Protocol):
    """Decides each round's trainable tensors (implemented in :mod:`fedskip.federation.planning`)."""

    def needs_scores(self, server_round: int) -> bool:
        """True when this round's choice needs fresh layer-importance scores from clients."""

    def plan(self, server_round: int, scores: list[float] | None) -> RoundPlan:
        """The round's plan; ``scores`` are the clients' averaged layer scores when requested."""


@dataclass
class RoundRecord:
    """What one round did on the wire and with the replies (the raw ``metrics.jsonl`` row).

    Bytes are ``ArrayRecord.count_bytes()`` of the tensors in the messages: ``bytes_down`` the
    train (and layer-scoring) instructions, ``bytes_up`` the train replies, ``bytes_eval`` the
    federated-evaluation instructions.
    """

    round: int
    layers: list[int] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    bytes_down: int = 0
    bytes_up: int = 0
    bytes_eval: int = 0
    replies_ok: int = 0
    replies_rejected: int = 0
    rejections: list[str] = field(default_factory=list)
    failed: bool = False
    failure: str = ""
    train_metrics: dict[str, float] = field(default_factory=dict)
    client_eval: dict[str, float] = field(default_factory=dict)
    site_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    """Each valid evaluation reply's metrics, by client id (read under ``personalize``)."""
    server_eval: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    """The round's wall seconds at the server (training, aggregation, evaluation)."""
    train_seconds: dict[int, float] = field(default_factory=dict)
    """Each accepted train reply's ``train-seconds`` (that client's own training time this round,
    wall seconds at the site; a negative figure is not recorded), by client id."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClientsUnavailable(FedskipError):
    """Fewer SuperNodes connected (or able to load their data) than the run needs."""


CLIENT_USER_ERROR = "fedskip user error during "
"""Starts what a client's failed reply says when its work raised a
:class:`~fedskip.errors.FedskipError` (bad data or settings at the site, e.g. a site without a
test split): ``fedskip user error during STAGE: MESSAGE``. The server ends the run with it
(:func:`raise_client_user_error`) — one line and exit 2, not a failed round per client."""
_USER_ERROR_RE = re.compile(re.escape(CLIENT_USER_ERROR) + r"(?P<stage>[^:]+): (?P<message>.*)")


class ClientUserError(FedskipError):
    """A client's work failed on a user error; the run cannot go on until the user fixes it."""


def raise_client_user_error(client: int, reason: str) -> None:
    """Raise :class:`ClientUserError` when a client's error ``reason`` (as Flower delivers it,
    wrapped in the exception's repr) is a user error; otherwise return."""
    found = _USER_ERROR_RE.search(reason)
    if found is None:
        return
    message = found["message"].strip().removesuffix("'>").rstrip()
    raise ClientUserError(f"{message} (raised by client {client} during {found['stage']})")


def sample_clients(
    client_ids: Sequence[int],
    fraction: float,
    minimum: int,
    *,
    seed: int,
    server_round: int,
    purpose: str,
) -> list[int]:
    """``max(int(n * fraction), minimum)`` (at most n) of ``client_ids``, sorted.

    The generator is seeded with ``(seed, round, purpose)`` only, so a resumed run samples exactly
    as an uninterrupted one and training and evaluation draw independently. The size rule is
    Flower's FedAvg rule.
    """
    ordered = sorted(client_ids)
    size = min(len(ordered), max(int(len(ordered) * fraction), minimum))
    rng = random.Random(f"fedskip:{seed}:{server_round}:{purpose}")
    return sorted(rng.sample(ordered, size))


def client_seed(seed: int, server_round: int, client_id: int) -> int:
    """The seed of one client's work in one round: a function of (seed, round, client) only."""
    digest = hashlib.sha256(f"fedskip:{seed}:{server_round}:{client_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
