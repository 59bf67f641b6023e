"""The run layer: one entry per method, each taking a :class:`~fedskip.config.Config` and
returning a :class:`~fedskip.records.schema.RunSummary`, all writing :class:`MetricsRow` rows and
``summary.json`` through :class:`fedskip.records.rundir.RunDir`.

| method | entry |
|---|---|
| ``centralized`` | :func:`fedskip.runs.centralized.run_centralized` |
| ``local`` | :func:`fedskip.runs.local.run_local` |
| federated, Simulation Engine | :func:`fedskip.runs.federated.run_simulation` |
| federated, Deployment Engine coordinator | :func:`fedskip.fl.server.run_server` (the ServerApp's work) |

:func:`run` picks the entry for ``cfg.method``; ``fedskip run``, ``fedskip centralized`` and the
bench runner call it. Importing this package is cheap (the entries import their work lazily), so
the record schema can be used by any layer that writes run records.
"""

from __future__ import annotations

from fedskip.config import Config
from fedskip.records.schema import MetricsRow, RunSummary

__all__ = ["MetricsRow", "RunSummary", "run"]


def run(cfg: Config) -> RunSummary:
    """Train ``cfg`` with its method's entry; returns the run's summary. The run's activation
    folder (``OUT/activation-cache``: cached hidden states, patient data at rest) is removed
    before it starts (what a killed run left) and when it ends, however it ends."""
    from fedskip.train.activation_dir import activation_folder

    with activation_folder(cfg.out):
        return _run_method(cfg)


def _run_method(cfg: Config) -> RunSummary:
    if cfg.method_kind.federated:
        from fedskip.runs.federated import run_simulation

        return run_simulation(cfg)
    if cfg.method == "centralized":
        from fedskip.runs.centralized import run_centralized

        return run_centralized(cfg)
    from fedskip.runs.local import run_local

    return run_local(cfg)
