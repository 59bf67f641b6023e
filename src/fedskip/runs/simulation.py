"""Run the fedskip Flower app on Flower's Simulation Engine with a resolved config.

``fedskip run`` lands here: one SuperNode per client partition, the resolved :class:`Config`
as the run config of the ServerApp and every ClientApp (the same apps ``flwr run .`` starts,
built by :func:`build_server_app` / :func:`build_client_app`), and a backend sized to the
machine: up to one client per core (at most 4 at once, each worker holds a model copy), each
with its share of the cores as torch threads — on 2 cores two clients train in parallel while
the server waits.

Flower's, fedskip's and the workers' logs and Python warnings go to ``OUT/run.log``; the console
shows fedskip's own lines only (Ray does not forward worker output to the driver: that is where
lines such as "Manually terminating ClientAppActor" came from). The privacy warnings a client
raises in its worker (e.g. DP-SGD's) are relayed from ``run.log`` to the console, each distinct
one once (:class:`WorkerWarnings`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedskip.config import Config
from fedskip.errors import ConfigError, print_warning
from fedskip.federation.client import THREADS_ENV
from fedskip.federation.round_types import CLIENT_USER_ERROR
from fedskip.fl import stop
from fedskip.fl.worker_log import LOG_FORMAT, LOGGERS, WORKER_LOG_ENV, file_handler

LOG_FILE = "run.log"


MAX_PARALLEL_CLIENTS = 4
"""Clients trained at the same time: each worker holds a model copy, so memory grows with it."""
PARALLEL_ENV = "FEDSKIP_PARALLEL_CLIENTS"
"""Caps the clients trained at once (e.g. ``1`` for a large model on one GPU, or to compare
against a sequential loop on equal cores); it never raises the cap above the machine's."""


def parallel_clients(num_clients: int) -> tuple[int, int]:
    """(clients trained at once, CPU cores = torch threads per client) on this machine:
    up to one client per core, at most :data:`MAX_PARALLEL_CLIENTS` and at most
    ``$FEDSKIP_PARALLEL_CLIENTS`` when set."""
    cpus = max(1, os.cpu_count() or 1)
    cap = MAX_PARALLEL_CLIENTS
    raw = os.environ.get(PARALLEL_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{PARALLEL_ENV}={raw!r}: expected a whole number >= 1")
        cap = min(cap, int(raw))
    parallel = max(1, min(cpus, num_clients, cap))
    return parallel, max(1, cpus // parallel)


def backend_config(cfg: Config, num_clients: int) -> dict[str, Any]:
    """Ray backend sized by :func:`parallel_clients`; running clients share a GPU when CUDA is
    used."""
    import torch

    parallel, cores = parallel_clients(num_clients)
    gpus = 0.0
    if cfg.device != "cpu" and torch.cuda.is_available():
        gpus = 1.0 / parallel
    return {
        "client_resources": {"num_cpus": cores, "num_gpus": gpus},
        "init_args": {
            "num_cpus": parallel * cores,
            "logging_level": "ERROR",
            "log_to_driver": False,  # worker logs go to run.log (attach_worker_log)
            "_node_ip_address": LOOPBACK,  # with _ray_on_loopback: no listener off this host
        },
    }


LOOPBACK = "127.0.0.1"
RAY_SINGLE_HOST_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for its single-machine mode, in which its node address is the loopback one."""


@contextmanager
def _ray_on_loopback() -> Iterator[None]:
    """Ray's GCS, raylet, workers and agents listen on 127.0.0.1 only while the block runs.

    The Simulation Engine needs no other host, but Ray binds its gRPC servers to every
    interface unless its node address is the loopback one, and ``ray.init`` replaces a loopback
    ``_node_ip_address`` with the machine's network address unless Ray runs in its
    single-machine mode (ray 2.55: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` false,
    from :data:`RAY_SINGLE_HOST_ENV` = 0 when Ray is imported; the variable also reaches Ray's
    own processes). ``tests/fl/test_run_cli.py`` checks the listening sockets of a run."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # Ray may have been imported before the variable
    try:
        with _environ(RAY_SINGLE_HOST_ENV, "0"):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


class _DropDeprecation(logging.Filter):
    """Hide Flower's notice that the Python ``run_simulation`` API is deprecated in favour of
    ``flwr run`` (fedskip offers both; the notice only confuses ``fedskip run`` users)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DEPRECATED FEATURE" not in record.getMessage() and (
            "deprecated feature" not in record.getMessage()
        )


@contextmanager
def run_logging(out: str | Path, *, quiet: bool) -> Iterator[Path]:
    """Send Flower's and fedskip's logs and Python warnings (library deprecation notices) to
    ``OUT/run.log``; keep only errors (warnings unless ``quiet``) from Flower on the console."""
    from flwr.supercore.logger import console_handler

    path = Path(out) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = file_handler(path, LOG_FORMAT)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    loggers[1].setLevel(logging.INFO)
    loggers[2].propagate = False  # warnings: run.log only, not Python's last-resort stderr
    logging.captureWarnings(True)
    level, dropper, stopping = console_handler.level, _DropDeprecation(), _DropWhileStopping()
    user_errors = _DropClientUserErrors()
    console_handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    console_handler.addFilter(dropper)
    console_handler.addFilter(stopping)
    console_handler.addFilter(user_errors)
    relay = WorkerWarnings(path)
    try:
        with _environ(WORKER_LOG_ENV, str(path.resolve())), relay:
            yield path
    finally:
        logging.captureWarnings(False)
        console_handler.setLevel(level)
        console_handler.removeFilter(dropper)
        console_handler.removeFilter(stopping)
        console_handler.removeFilter(user_errors)
        for logger, (logger_level, propagate) in zip(loggers, saved):
            logger.removeHandler(handler)
            logger.setLevel(logger_level)
            logger.propagate = propagate
        handler.close()


WORKER_WARNING = re.compile(
    r"^\S+ \S+ WARNING fedskip\.privacy(?:\.\S+)? \[worker \d+\]: (?P<message>.*)$"
)
"""A privacy warning a simulation worker wrote to run.log (:data:`fedskip.fl.worker_log.WORKER_LOG_FORMAT`)."""


class WorkerWarnings:
    """While the simulation runs (a context manager): every ``interval`` seconds, and once more
    at the end, print the privacy warnings that workers appended to ``run.log`` on the console
    (:func:`fedskip.errors.print_warning`), each distinct message once and marked as a
    client's. Ray keeps the workers' own output off the console, so this is how a client's
    DP-SGD warning reaches the person running the simulation."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path, self.interval = path, interval
        self.offset = path.stat().st_size if path.exists() else 0
        self.seen: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="fedskip-warnings", daemon=True)

    def __enter__(self) -> WorkerWarnings:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.relay()

    def _poll(self) -> None:
        while not self._done.wait(self.interval):
            self.relay()

    def relay(self) -> None:
        """Print the new workers' privacy warnings (whole lines only) not printed before."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            found = WORKER_WARNING.match(line)
            if found and found["message"] not in self.seen:
                self.seen.add(found["message"])
                print_warning(f"{found['message']} (a client)")


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set an environment variable (inherited by the simulation's workers) for a block."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """The server's torch threads for a block: a client's share of the cores. More threads
    than free cores make OpenMP spin-wait (7x the CPU time for evaluation measured here on a
    busy 2-core machine)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


STOP_WAIT_S = 60.0
"""Seconds an interrupted driver waits for the ServerApp to end (a server-side evaluation
under way finishes first)."""


@contextmanager
def _stopped_on_signals(cfg: Config) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP while the simulation runs: ask the ServerApp thread (which
    signals never reach) to stop, keep the shutdown's noise off the console, wait for the
    ServerApp to end and raise :class:`fedskip.fl.stop.SimulationStopped`, which says where the
    run can resume. Enter it after Ray has started in this process: ``ray.init`` installs a
    SIGTERM handler of its own (``sys.exit``) that this one replaces for the run."""
    stop.REQUESTED.clear()
    try:
        with stop.interrupts_as_exceptions(stop.STOP_SIGNALS, first=stop.REQUESTED.set):
            yield
    except KeyboardInterrupt as exc:
        stop.REQUESTED.set()
        if stop.SERVING.acquire(timeout=STOP_WAIT_S):  # the ServerApp has ended
            stop.SERVING.release()
        raise stop.SimulationStopped(
            f"{str(exc) or 'Ctrl-C'}; rounds finished so far are checkpointed in {cfg.out}: "
            f"resume with `fedskip run --resume {cfg.out}`"
        ) from None


def _start_ray(backend: dict[str, Any]) -> None:
    """Start Ray in this process exactly as the Simulation Engine would (its RayBackend's own
    ``init_ray``, which skips an initialized Ray), so that :func:`_stopped_on_signals` can
    take over the SIGTERM handler ``ray.init`` installs."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    starter = RayBackend.__new__(RayBackend)  # only init_ray: no actor pool yet
    starter.init_args_key = "init_args"
    starter.init_ray(backend)


class _DropClientUserErrors(logging.Filter):
    """Console filter: Flower's tracebacks of a client's user error (the run ends with that
    error as one line; the tracebacks stay in run.log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return CLIENT_USER_ERROR not in text and not text.startswith(
            "An exception was raised when processing a message by"
        )


class _DropWhileStopping(logging.Filter):
    """Console filter: after a stop was requested, Flower's message workers report the Ray
    actors that the shutdown ends as errors; those stay in run.log, off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not stop.REQUESTED.is_set()


def simulate(cfg: Config) -> dict[str, Any]:
    """Run ``cfg`` federated on the Simulation Engine; returns the run's ``summary.json``.
    Ctrl-C, SIGTERM or SIGHUP stop it within seconds (Ray's shutdown; a server-side
    evaluation in progress finishes first) and raise :class:`fedskip.fl.stop.SimulationStopped`
    (a KeyboardInterrupt); the last finished round's checkpoint stays for ``--resume``."""
    import json

    from flwr.simulation import run_simulation

    from fedskip.fl.client_app import build_client_app
    from fedskip.fl.server_app import build_server_app
    from fedskip.pipeline import prepare

    # Reading the data here also generates the synthetic corpus once, before any worker starts.
    num_clients = prepare(cfg).num_clients
    run_config = cfg.to_run_config()
    threads = os.environ.get(THREADS_ENV) or str(parallel_clients(num_clients)[1])
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray notice
    # Ray starts its workers at nice 15: on a machine shared with other jobs the clients'
    # training then gets a fraction of the CPU the driver and every other process get. At 0
    # they run at the niceness fedskip was started with (`nice fedskip run` still works).
    os.environ.setdefault("RAY_worker_niceness", "0")
    from fedskip.train.activation_dir import activation_folder
    from fedskip.train.activation_store import SPILL_DIR_ENV

    with (
        stop.interrupts_as_exceptions(),
        run_logging(cfg.out, quiet=cfg.quiet),
        _environ(THREADS_ENV, threads),
        _torch_threads(int(threads)),
        # the node's activation-cache folder in the run directory (owner-only), shared by its
        # workers; a killed run's is removed first, this run's when the run ends
        activation_folder(cfg.out) as activations,
        _environ(SPILL_DIR_ENV, str(activations.resolve())),
    ):
        backend = backend_config(cfg, num_clients)
        try:
            with _ray_on_loopback():
                _start_ray(backend)
                with _stopped_on_signals(cfg):
                    run_simulation(
                        server_app=build_server_app(run_config),
                        client_app=build_client_app(run_config),
                        num_supernodes=num_clients,
                        backend_config=backend,
                    )
        finally:
            import ray

            # Flower's backend shuts Ray down at the end of a run; this covers a failure
            # before the Simulation Engine started (a no-op when Ray is already down)
            ray.shutdown()
    summary_path = Path(cfg.out) / "summary.json"
    return dict(json.loads(summary_path.read_text("utf-8")))
