"""Built-in layer-selection strategies (top, bottom, interleaved, explicit, importance, rotating)
and :func:`get_selector`, which looks a registered one up by name.

Block 0 is the block nearest the embeddings; block ``num_blocks - 1`` feeds the head.
"""

from __future__ import annotations

from fedskip.errors import ConfigError
from fedskip.selection.base import (
    SELECTORS,
    LayerSelector,
    SelectionRequest,
    check_k,
    register_selector,
)


@register_selector("top")
class TopSelector(LayerSelector):
    """The last k blocks (the paper's default: upper layers adapt, lower ones stay generic)."""

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks, k = r.num_blocks, r.k
        check_k(num_blocks, k)
        return list(range(num_blocks - k, num_blocks))


@register_selector("bottom")
class BottomSelector(LayerSelector):
    """The first k blocks (an ablation: backward still runs through every block above)."""

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks, k = r.num_blocks, r.k
        check_k(num_blocks, k)
        return list(range(k))


@register_selector("interleaved")
class InterleavedSelector(LayerSelector):
    """Every n-th block counting down from the top (``every`` = n), or, with ``every=0``, k
    blocks spread evenly with the top block always included: block ``B-1-floor(i*B/k)``."""

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks, k = r.num_blocks, r.k
        check_k(num_blocks, k)
        if r.every < 0:
            raise ConfigError(f"config key 'layer-every': {r.every} must be >= 0")
        if r.every == 0:
            return [num_blocks - 1 - (i * num_blocks) // k for i in range(k)]
        available = list(range(num_blocks - 1, -1, -r.every))
        if len(available) < k:
            raise ConfigError(
                f"config key 'layer-every': {r.every} picks only {len(available)} of {num_blocks} "
                f"blocks ({', '.join(map(str, available))}), fewer than layers={k}"
            )
        return available[:k]


@register_selector("explicit")
class ExplicitSelector(LayerSelector):
    """Exactly the blocks in ``ids`` (config key 'layer-ids'); ``k`` is not used."""

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks = r.num_blocks
        chosen = list(r.ids)
        valid = f"0..{num_blocks - 1}"
        if not chosen:
            raise ConfigError(
                f"config key 'layer-ids' is empty; give block indices in {valid}, e.g. '0,{num_blocks - 1}'"
            )
        bad = [i for i in chosen if not 0 <= i < num_blocks]
        if bad:
            raise ConfigError(f"config key 'layer-ids': {bad} out of range {valid}")
        dupes = sorted({i for i in chosen if chosen.count(i) > 1})
        if dupes:
            raise ConfigError(
                f"config key 'layer-ids': duplicate block(s) {dupes}; valid range {valid}"
            )
        return chosen


@register_selector("importance")
class ImportanceSelector(LayerSelector):
    """The k blocks with the highest scores (e.g. gradient norms); ties go to the higher block."""

    needs_scores = True

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks, k = r.num_blocks, r.k
        check_k(num_blocks, k)
        scores = r.scores
        if scores is None:
            raise ValueError("layer-strategy importance needs per-block scores (see score_layers)")
        if len(scores) != num_blocks:
            raise ValueError(f"got {len(scores)} scores for {num_blocks} blocks")
        ranked = sorted(range(num_blocks), key=lambda i: (float(scores[i]), i), reverse=True)
        return ranked[:k]


@register_selector("rotating")
class RotatingSelector(LayerSelector):
    """Contiguous groups of k blocks, one group per round, from the top down, wrapping around.

    The blocks split into ``ceil(B/k)`` groups: group j covers top ``B-1-j*k`` down; the lowest
    group is shifted up to start at block 0 so every group has exactly k blocks. Round r uses
    group ``(r-1) mod ceil(B/k)``, so every block is trained once per cycle.
    """

    dynamic = True

    def _select(self, r: SelectionRequest) -> list[int]:
        num_blocks, k = r.num_blocks, r.k
        check_k(num_blocks, k)
        groups = -(-num_blocks // k)
        group = (r.round - 1) % groups
        low = max(0, num_blocks - (group + 1) * k)
        return list(range(low, low + k))


def get_selector(name: str) -> LayerSelector:
    """A new instance of the strategy ``name`` (a built-in one above, or one registered with
    :func:`fedskip.selection.base.register_selector`); unknown names raise ConfigError."""
    try:
        return SELECTORS[name]()
    except KeyError:
        raise ConfigError(
            f"config key 'layer-strategy': {name!r} is not one of {', '.join(SELECTORS)}"
        ) from None
