"""Layer-selection strategies behind one interface (:class:`LayerSelector`) with a registry."""

from fedskip.selection.base import (
    SELECTORS,
    LayerSelector,
    SelectionRequest,
    check_k,
    register_selector,
)
from fedskip.selection.strategies import get_selector

__all__ = [
    "SELECTORS",
    "LayerSelector",
    "SelectionRequest",
    "check_k",
    "get_selector",
    "register_selector",
]
