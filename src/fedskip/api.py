"""The Python API for notebooks and scripts, re-exported by ``fedskip``: :func:`run`,
:func:`evaluate`, :func:`predict` (and :class:`~fedskip.config.Config`,
:class:`~fedskip.records.schema.RunSummary`).

The same work as ``fedskip run`` / ``evaluate`` / ``predict``, returning Python objects instead
of printing; user errors raise :class:`fedskip.errors.FedskipError` subclasses with the CLI's
one-line message. Heavy libraries load on the first call, not on ``import fedskip``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedskip.config import Config, load_config
from fedskip.records.schema import RunSummary

ConfigLike = Config | Mapping[str, Any] | str | Path | None


def as_config(config: ConfigLike = None, **overrides: Any) -> Config:
    """A validated :class:`Config` from a Config, a mapping of keys (kebab- or snake_case), a
    TOML file path or None (the defaults), with ``overrides`` (snake_case keywords) on top."""
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = Config.from_mapping(config)
    else:
        cfg = load_config(config)
    return Config.from_mapping(overrides, base=cfg) if overrides else cfg


def run(config: ConfigLike = None, **overrides: Any) -> RunSummary:
    """Train as ``fedskip run`` does with the method of the config (federated on Flower's
    Simulation Engine, ``centralized`` or ``local``) and return the run's summary (what
    ``OUT/summary.json`` holds: ``final_metric``, ``best_metric``, bytes exchanged, ε at δ, ...);
    the run directory gets its ``report.md`` and ``plots/`` as with ``fedskip run``.

    ``config``: a :class:`Config`, a dict such as ``{"method": "centralized", "epochs": 2}``, a
    TOML file or None for the defaults; ``overrides``: keys as keywords (``rounds=2``)."""
    from fedskip.commands.common import leave_report
    from fedskip.runs import run as run_method
    from fedskip.tracking import require_backends

    cfg = as_config(config, **overrides)
    require_backends(cfg)
    summary = run_method(cfg)
    leave_report(summary.get("out", cfg.out))
    return summary


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    data_format: str = "auto",
    label: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
) -> dict[str, Any]:
    """Metrics of an exported model (``OUT/model`` or the run directory ``OUT``) on a labeled
    dataset or folder of sites, as ``fedskip evaluate --json`` prints them: strict entity
    ``f1`` / ``precision`` / ``recall`` and ``per_type`` for NER; ``accuracy`` / ``macro_f1``
    (or ``micro_f1`` / ``auroc`` multi-label) for classification."""
    from fedskip.commands.evaluate import evaluate_export

    return evaluate_export(
        model, data, data_format=data_format, label=label, batch_size=batch_size, device=device
    )


def predict(
    model: str | Path, text: str, *, batch_size: int = 16, device: str = "auto"
) -> dict[str, Any]:
    """What an exported model finds in ``text``, as ``fedskip predict --json`` prints it: NER
    ``{"task": "ner", "entities": [{"type", "start", "end", "text", "score"}]}`` (character
    offsets into ``text``, end exclusive; ``score``: the mean probability of the entity's
    tags); classification ``{"task": "classification", "labels": [{"label", "score"}],
    "predicted": ...}`` (labels by descending probability)."""
    from fedskip.commands.predict import predict_note

    return predict_note(model, text, source="predict", batch_size=batch_size, device=device)
