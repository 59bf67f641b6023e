"""Federated methods (``federated`` in :mod:`fedskip.methods`: ``layerskip``, ``fedavg``,
``fedprox``, ``lora``) on Flower.

:func:`run_simulation` runs the fedskip Flower app on Flower's Simulation Engine (one SuperNode
per client partition). On the Deployment Engine the coordinator's entry is the ServerApp's
:func:`fedskip.fl.server.run_server` ``(grid, cfg)`` — the same server code, run by Flower on
the SuperLink side; it writes the same rows and summary.
"""

from __future__ import annotations

from fedskip.config import Config
from fedskip.records.schema import RunSummary


def run_simulation(cfg: Config) -> RunSummary:
    """Run ``cfg`` federated on the Simulation Engine; returns the run's ``summary.json``."""
    from fedskip.runs.simulation import simulate

    return RunSummary(simulate(cfg))
