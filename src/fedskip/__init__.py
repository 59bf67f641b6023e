"""fedskip: Layer-Skipping Federated Learning for clinical NLP (arXiv 2504.10536) on Flower.

The Python API (README, "Python API"): :func:`run` trains and returns a :class:`RunSummary`,
:func:`evaluate` and :func:`predict` use an exported model, :class:`Config` holds the settings.
They load on first use, so ``import fedskip`` and ``fedskip.__version__`` stay instant (no
torch, transformers or Flower import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "RunSummary", "__version__", "evaluate", "predict", "run"]

if TYPE_CHECKING:
    from fedskip.api import evaluate, predict, run
    from fedskip.config import Config
    from fedskip.records.schema import RunSummary

_LAZY = {
    "Config": "fedskip.config",
    "RunSummary": "fedskip.records.schema",
    "run": "fedskip.api",
    "evaluate": "fedskip.api",
    "predict": "fedskip.api",
}


def __getattr__(name: str) -> Any:
    """The public names of :data:`__all__`, imported on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'fedskip' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
