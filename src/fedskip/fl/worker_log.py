"""A simulation worker's logs into the run's ``run.log``: the part of the run logging that the
ClientApp needs (:func:`attach_worker_log`), apart from the Simulation Engine's driver
(:mod:`fedskip.runs.simulation`, which sets :data:`WORKER_LOG_ENV` for its workers)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

WORKER_LOG_ENV = "FEDSKIP_RUN_LOG"
"""Set for the simulation's workers: the ``run.log`` their own logs go to."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [worker %(process)d]: %(message)s"
LOGGERS = ("flwr", "fedskip", "py.warnings")


def file_handler(path: Path, fmt: str) -> logging.FileHandler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(logging.INFO)
    return handler


_worker_handler: logging.FileHandler | None = None


def attach_worker_log() -> None:
    """In a simulation worker (``FEDSKIP_RUN_LOG`` set by
    :func:`fedskip.runs.simulation.run_logging`): append Flower's and fedskip's logs and Python
    warnings to that ``run.log``, once per process and run. Elsewhere (Deployment Engine,
    in-process tests) a no-op."""
    global _worker_handler
    path = os.environ.get(WORKER_LOG_ENV)
    if not path or (_worker_handler is not None and _worker_handler.baseFilename == path):
        return
    handler = file_handler(Path(path), WORKER_LOG_FORMAT)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _worker_handler is not None:
            logger.removeHandler(_worker_handler)
        logger.addHandler(handler)
    logging.getLogger("fedskip").setLevel(logging.INFO)
    logging.captureWarnings(True)
    _worker_handler = handler
