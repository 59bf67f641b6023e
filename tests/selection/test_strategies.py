"""Every layer-selection strategy in one table of exact expected indices, then its errors."""

from __future__ import annotations

import pytest

from fedskip.config import LAYER_STRATEGIES
from fedskip.errors import ConfigError
from fedskip.selection import (
    SELECTORS,
    LayerSelector,
    SelectionRequest,
    get_selector,
    register_selector,
)

# strategy, num_blocks, k, keyword arguments, expected sorted indices
CASES = [
    ("top", 6, 2, {}, [4, 5]),
    ("top", 16, 8, {}, [8, 9, 10, 11, 12, 13, 14, 15]),
    ("top", 4, 4, {}, [0, 1, 2, 3]),
    ("top", 6, 2, {"round": 7}, [4, 5]),
    ("bottom", 6, 2, {}, [0, 1]),
    ("bottom", 16, 1, {}, [0]),
    ("interleaved", 6, 2, {}, [2, 5]),
    ("interleaved", 6, 3, {}, [1, 3, 5]),
    ("interleaved", 6, 4, {}, [1, 2, 4, 5]),
    ("interleaved", 16, 4, {}, [3, 7, 11, 15]),
    ("interleaved", 6, 6, {}, [0, 1, 2, 3, 4, 5]),
    ("interleaved", 6, 2, {"every": 2}, [3, 5]),
    ("interleaved", 16, 3, {"every": 4}, [7, 11, 15]),
    ("interleaved", 6, 2, {"every": 1}, [4, 5]),
    ("explicit", 6, 2, {"ids": [5, 0]}, [0, 5]),
    ("explicit", 6, 1, {"ids": [0, 2, 3]}, [0, 2, 3]),
    ("importance", 6, 2, {"scores": [0.1, 0.9, 0.3, 0.2, 0.8, 0.05]}, [1, 4]),
    ("importance", 4, 2, {"scores": [1.0, 1.0, 1.0, 0.0]}, [1, 2]),
    ("importance", 4, 1, {"scores": [2.0, 0.0, 0.0, 2.0]}, [3]),
    ("rotating", 6, 2, {"round": 1}, [4, 5]),
    ("rotating", 6, 2, {"round": 2}, [2, 3]),
    ("rotating", 6, 2, {"round": 3}, [0, 1]),
    ("rotating", 6, 2, {"round": 4}, [4, 5]),
    ("rotating", 6, 4, {"round": 1}, [2, 3, 4, 5]),
    ("rotating", 6, 4, {"round": 2}, [0, 1, 2, 3]),
    ("rotating", 6, 4, {"round": 3}, [2, 3, 4, 5]),
    ("rotating", 5, 2, {"round": 3}, [0, 1]),
    ("rotating", 6, 6, {"round": 5}, [0, 1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize(("strategy", "num_blocks", "k", "kwargs", "expected"), CASES)
def test_selection_table(
    strategy: str, num_blocks: int, k: int, kwargs: dict, expected: list[int]
) -> None:
    assert get_selector(strategy).select(num_blocks, k, **kwargs) == expected


# strategy, num_blocks, k, keyword arguments, error type, message pattern
ERRORS = [
    ("top", 6, 7, {}, ConfigError, r"'layers': 7 must be between 1 and 6"),
    ("bottom", 6, 0, {}, ConfigError, r"'layers': 0 must be between 1 and 6"),
    ("interleaved", 4, 5, {}, ConfigError, r"'layers': 5 must be between 1 and 4"),
    ("rotating", 16, 17, {}, ConfigError, r"'layers': 17 must be between 1 and 16"),
    ("importance", 6, 7, {"scores": [0.0] * 6}, ConfigError, r"'layers': 7"),
    (
        "interleaved",
        6,
        4,
        {"every": 2},
        ConfigError,
        r"'layer-every': 2 picks only 3 of 6 blocks \(5, 3, 1\), fewer than layers=4",
    ),
    ("interleaved", 6, 2, {"every": -1}, ConfigError, r"'layer-every': -1 must be >= 0"),
    ("explicit", 6, 2, {"ids": [0, 6]}, ConfigError, r"'layer-ids': \[6\] out of range 0\.\.5"),
    ("explicit", 6, 2, {"ids": [-1]}, ConfigError, r"'layer-ids': \[-1\] out of range 0\.\.5"),
    (
        "explicit",
        6,
        2,
        {"ids": [1, 1]},
        ConfigError,
        r"'layer-ids': duplicate block\(s\) \[1\]; valid range 0\.\.5",
    ),
    (
        "explicit",
        6,
        2,
        {"ids": []},
        ConfigError,
        r"'layer-ids' is empty; give block indices in 0\.\.5",
    ),
    ("importance", 6, 2, {}, ValueError, r"needs per-block scores"),
    ("importance", 6, 2, {"scores": [1.0, 2.0]}, ValueError, r"2 scores for 6 blocks"),
    ("top", 6, 2, {"round": 0}, ValueError, r"round is 1-based"),
]


@pytest.mark.parametrize(("strategy", "num_blocks", "k", "kwargs", "error", "match"), ERRORS)
def test_selection_errors(strategy, num_blocks, k, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        get_selector(strategy).select(num_blocks, k, **kwargs)


def test_registry_matches_the_config_choices() -> None:
    get_selector("top")
    assert set(LAYER_STRATEGIES) <= set(SELECTORS)
    flags = {
        name: (get_selector(name).dynamic, get_selector(name).needs_scores)
        for name in LAYER_STRATEGIES
    }
    assert flags == {
        "top": (False, False),
        "bottom": (False, False),
        "interleaved": (False, False),
        "explicit": (False, False),
        "importance": (False, True),
        "rotating": (True, False),
    }


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match=r"'layer-strategy': 'middle' is not one of top, bottom"):
        get_selector("middle")


def test_register_a_custom_strategy() -> None:
    @register_selector("test-middle")
    class Middle(LayerSelector):
        def _select(self, r: SelectionRequest) -> list[int]:
            start = (r.num_blocks - r.k) // 2
            return list(range(start + r.k - 1, start - 1, -1))  # unsorted on purpose

    try:
        assert get_selector("test-middle").select(6, 2) == [2, 3]
        assert get_selector("test-middle").name == "test-middle"
        with pytest.raises(ValueError, match="already registered"):

            @register_selector("test-middle")
            class Other(Middle):
                pass
    finally:
        SELECTORS.pop("test-middle")


def test_rotating_covers_every_block_once_per_cycle() -> None:
    selector = get_selector("rotating")
    seen = [i for r in (1, 2, 3) for i in selector.select(6, 2, round=r)]
    assert sorted(seen) == list(range(6))
