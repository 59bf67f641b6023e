"""The layer-selection interface and its registry.

A strategy answers one question: which of ``num_blocks`` transformer blocks (0 = closest to the
embeddings) are trained and exchanged this round. Strategies are small classes registered by
name (the built-in ones in :mod:`fedskip.selection.strategies`); callers use
:func:`fedskip.selection.get_selector` and never branch on the strategy name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fedskip.errors import ConfigError


@dataclass(frozen=True)
class SelectionRequest:
    """The arguments of one :meth:`LayerSelector.select` call."""

    num_blocks: int
    k: int
    round: int
    ids: tuple[int, ...]
    scores: Sequence[float] | None
    every: int


class LayerSelector(ABC):
    """Chooses the block indices trained in a round.

    ``dynamic``: the choice depends on the round number (the exchanged key set changes across
    rounds). ``needs_scores``: :meth:`select` requires per-block ``scores`` (see
    :func:`fedskip.selection.importance.score_layers`); the choice changes only when the scores do.
    """

    name: str = ""
    dynamic: bool = False
    needs_scores: bool = False

    def select(
        self,
        num_blocks: int,
        k: int,
        *,
        round: int = 1,
        ids: Sequence[int] = (),
        scores: Sequence[float] | None = None,
        every: int = 0,
    ) -> list[int]:
        """Sorted block indices for ``round`` (1-based). ``k`` = number of blocks (config 'layers')."""
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if round < 1:
            raise ValueError(f"round is 1-based, got {round}")
        request = SelectionRequest(num_blocks, k, round, tuple(int(i) for i in ids), scores, every)
        return sorted(self._select(request))

    @abstractmethod
    def _select(self, request: SelectionRequest) -> list[int]:
        """Unsorted block indices; ``num_blocks`` and ``round`` are already checked."""


def check_k(num_blocks: int, k: int) -> None:
    """k must lie in 1..num_blocks (config key 'layers')."""
    if not 1 <= k <= num_blocks:
        raise ConfigError(
            f"config key 'layers': {k} must be between 1 and {num_blocks} (the model's blocks)"
        )


SELECTORS: dict[str, type[LayerSelector]] = {}
"""Registered strategies by name."""

_S = TypeVar("_S", bound=type[LayerSelector])


def register_selector(name: str) -> Callable[[_S], _S]:
    """Class decorator registering a :class:`LayerSelector` under ``name``."""

    def decorate(cls: _S) -> _S:
        if name in SELECTORS and SELECTORS[name] is not cls:
            raise ValueError(f"layer selector {name!r} is already registered")
        cls.name = name
        SELECTORS[name] = cls
        return cls

    return decorate
