"""A real Flower deployment on loopback: one SuperLink and N SuperNodes as separate processes.

``fedskip deploy local`` uses it to try a multi-site setup on one machine exactly as it would
run across hospitals: TLS on every connection, SuperNode authentication (only registered site
keys may join), each SuperNode reading its own site's data through its node config, and the
run submitted with ``flwr run``. Fault drills kill a SuperNode mid-round or restart the
SuperLink, which then resumes the run from its last checkpoint.

Layout of ``out`` (besides the run records the ServerApp writes: ``config.json``,
``metrics.jsonl``, ``summary.json``, ``model/``, ``checkpoint/``)::

    deployment.json     sites, addresses, node ids, runs, events, final status (and, with
                        ``measure_wire``, each site's bytes on the wire: :mod:`.wire`)
    processes.json      peak memory of the coordinator's and each site's process tree
                        (:mod:`fedskip.deploy.memory`)
    logs/               superlink.log, site-<i>.log, run-<id>.log (ServerApp stream), events.jsonl
    pki/                test CA, SuperLink certificate, site keys (local trials only)
    app/                the Flower app bundle's pyproject.toml; run-config.toml
    flwr-home/          the private Flower home (connection config, installed bundles)
    superlink/state.db  the SuperLink's database (registrations and runs survive restarts)
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fedskip.config import Config, Scalar
from fedskip.deploy.certs import NodeKeys, generate_local_pki, generate_node_keys
from fedskip.deploy.flower import (
    FlowerCli,
    TlsFiles,
    superlink_command,
    supernode_command,
    write_app,
)
from fedskip.deploy.memory import DEFAULT_INTERVAL_S, MemoryMonitor
from fedskip.deploy.processes import (
    DEFAULT_GRACE_S,
    DeploymentError,
    ManagedProcess,
    ProcessSupervisor,
    free_ports,
    wait_for_port,
)
from fedskip.deploy.wire import WireRelay

HOST = "127.0.0.1"
SUPERLINK_STATES = ("disk", "memory")
ONLINE_MARK = "SuperNode ID:"
"""What ``flower-supernode`` (1.42) logs once the SuperLink has accepted (activated) it."""
AUTH_REFUSED_MARK = "Failed to activate SuperNode"
"""What ``flower-supernode`` (1.42) logs before exiting when the SuperLink does not know its key
(Flower exit code 305, "[code: 2004]"; the process status itself is 1)."""


@dataclass(frozen=True)
class Site:
    """One hospital: its name and what its SuperNode's node config says about local data."""

    name: str
    node_config: dict[str, Scalar]


@dataclass
class Drills:
    """Faults to inject while the run goes on (all off by default)."""

    kill_site: tuple[int, int] | None = None
    """(site index, round): SIGKILL that site's SuperNode while it works on that round."""
    restart_superlink_after: int | None = None
    """Crash the SuperLink (with its ServerApp) after this round; restart it and resume."""
    probe_unregistered: bool = False
    """Start a SuperNode with an unregistered key and require the SuperLink to refuse it."""


@dataclass
class Options:
    """How to run the deployment."""

    tls: bool = True
    auth: bool = True
    grace: float = DEFAULT_GRACE_S
    startup_timeout: float = 120.0
    run_timeout: float | None = None
    client_threads: int = 1
    echo: Callable[[str], None] = print
    drills: Drills = field(default_factory=Drills)
    run_config: dict[str, Scalar] = field(default_factory=dict)
    """Run-config values for the ServerApp on top of the resolved config (``out`` is set)."""
    control_api_address: str = ""
    """The SuperLink's gRPC Control API address; empty: a free port on 127.0.0.1."""
    measure_wire: bool = False
    """Route each site through a counting relay (:class:`~fedskip.deploy.wire.WireRelay`) and
    record its bytes on the wire in ``deployment.json``."""
    memory_interval: float = DEFAULT_INTERVAL_S
    """Seconds between two samples of the processes' memory (``processes.json``)."""
    superlink_state: str = "disk"
    """Where the SuperLink keeps its state and the messages in flight: ``disk`` (SQLite in
    ``superlink/state.db``: registrations and runs survive a restart) or ``memory`` (Flower's
    in-memory store: nothing survives a restart). With messages of a gigabyte or more from
    several sites at once (LLaMA 3.2-1B, k >= 4), Flower 1.42's SQLite store fails the round
    with "database is locked" (its 5 s busy timeout; BENCHMARKS.md §8): use ``memory``."""


class LocalDeployment:
    """Start, run and stop one loopback deployment; a context manager that always cleans up."""

    def __init__(
        self, cfg: Config, sites: Sequence[Site], out: Path, options: Options, *, version: str
    ) -> None:
        if not sites:
            raise DeploymentError("a deployment needs at least one site")
        if options.superlink_state not in SUPERLINK_STATES:
            raise DeploymentError(
                f"superlink_state {options.superlink_state!r} is not one of "
                + ", ".join(SUPERLINK_STATES)
            )
        if options.superlink_state == "memory" and options.drills.restart_superlink_after:
            raise DeploymentError("restarting the SuperLink needs superlink_state='disk'")
        if options.auth and not options.tls:
            raise DeploymentError("SuperNode authentication needs TLS: use --tls (or --no-auth)")
        self.cfg = cfg
        self.sites = list(sites)
        self.out = out.resolve()
        self.opt = options
        self.version = version
        self.logs = self.out / "logs"
        self.sup = ProcessSupervisor(grace=options.grace)
        self.events: list[dict[str, Any]] = []
        self.node_ids: dict[str, int] = {}
        self.run_ids: list[int] = []
        self.status = "not started"
        self.tls: TlsFiles | None = None
        self.keys: dict[str, NodeKeys] = {}
        self.superlink_port = 0
        self.site_ports: list[int] = []
        self.control_api_address = ""
        self.probe_port = 0
        self.cli: FlowerCli | None = None
        self.relays: dict[str, WireRelay] = {}
        self.memory = MemoryMonitor(self.measured_processes, interval=options.memory_interval)

    def measured_processes(self) -> dict[str, ManagedProcess]:
        """The process trees whose memory is recorded: the SuperLink's and each site's."""
        names = {"superlink", *(s.name for s in self.sites)}
        return {n: m for n, m in list(self.sup.processes.items()) if n in names}

    # ------------------------------------------------------------------ records
    def event(self, kind: str, **detail: Any) -> None:
        """Append to ``logs/events.jsonl`` and echo one ``[deploy]`` line."""
        row = {"time": round(time.time(), 3), "event": kind, **detail}
        self.events.append(row)
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "events.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        text = " ".join(f"{k}={v}" for k, v in detail.items())
        self.opt.echo(f"[deploy] {kind} {text}".rstrip())

    def write_record(self) -> Path:
        """``deployment.json``: what ran where, the runs and every event."""
        record = {
            "superlink": {
                "address": f"{HOST}:{self.superlink_port}",
                "tls": self.opt.tls,
                "supernode_auth": self.opt.auth,
                "control_api_grpc": self.control_api_address,
                "log": str(self.logs / "superlink.log"),
            },
            "sites": [
                {
                    "name": site.name,
                    "node_id": self.node_ids.get(site.name),
                    "runtime_port": port,
                    "node_config": site.node_config,
                    "log": str(self.logs / f"{site.name}.log"),
                }
                for site, port in zip(self.sites, self.site_ports)
            ],
            "runs": self.run_ids,
            "wire": {name: relay.record() for name, relay in self.relays.items()},
            "status": self.status,
            "events": self.events,
        }
        path = self.out / "deployment.json"
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ start
    def prepare(self) -> None:
        """Certificates and keys (TLS), the app bundle, the private Flower home, free ports."""
        self.out.mkdir(parents=True, exist_ok=True)
        # registrations and runs of an earlier invocation are stale (its keys are replaced)
        (self.out / "superlink" / "state.db").unlink(missing_ok=True)
        names = [s.name for s in self.sites]
        if self.opt.tls:
            pki = generate_local_pki(self.out / "pki", names)
            self.tls = TlsFiles(ca_cert=pki.ca.cert, cert=pki.server.cert, key=pki.server.key)
            self.keys = {k.name: k for k in pki.nodes}
        write_app(self.out / "app", version=self.version)
        ports = free_ports(len(self.sites) + 3, HOST)
        self.superlink_port, self.site_ports = ports[0], ports[1:-2]
        self.probe_port = ports[-2]
        self.control_api_address = self.opt.control_api_address or f"{HOST}:{ports[-1]}"
        self.cli = FlowerCli(
            self.out / "flwr-home",
            f"{HOST}:{self.superlink_port}",
            ca_cert=self.tls.ca_cert if self.tls else None,
        )
        if self.opt.measure_wire:
            self.relays = {
                site.name: WireRelay(site.name, HOST, self.superlink_port).start()
                for site in self.sites
            }

    def start(self) -> None:
        """SuperLink, site registration, SuperNodes; returns once every site is online."""
        self.prepare()
        self.memory.start()
        self.start_superlink()
        if self.opt.auth:
            for site in self.sites:
                self.node_ids[site.name] = self.flower.register(
                    self.keys[site.name].public_key, site.name
                )
            self.event("sites-registered", sites=len(self.sites))
        for index in range(len(self.sites)):
            self.start_site(index)
        probe = self.start_probe() if self.opt.drills.probe_unregistered else None
        self.wait_online()
        if probe is not None:
            self.check_probe_refused(probe)
        self.write_record()

    @property
    def flower(self) -> FlowerCli:
        """The ``flwr`` CLI bound to this deployment's SuperLink (after :meth:`prepare`)."""
        if self.cli is None:
            raise RuntimeError("prepare() first")
        return self.cli

    def start_superlink(self) -> ManagedProcess:
        argv = superlink_command(
            HOST,
            self.superlink_port,
            tls=self.tls,
            auth=self.opt.auth,
            database=self.out / "superlink" / "state.db"
            if self.opt.superlink_state == "disk"
            else None,
            control_api_address=self.control_api_address,
        )
        (self.out / "superlink").mkdir(parents=True, exist_ok=True)
        proc = self.sup.start(
            "superlink", argv, log=self.logs / "superlink.log", env=self.flower.env, cwd=self.out
        )
        wait_for_port(proc, HOST, self.superlink_port, timeout=self.opt.startup_timeout)
        self.event(
            "superlink-started",
            address=f"{HOST}:{self.superlink_port}",
            tls=self.opt.tls,
            auth=self.opt.auth,
        )
        return proc

    def start_site(self, index: int) -> ManagedProcess:
        site = self.sites[index]
        key = self.keys[site.name].private_key if self.opt.auth else None
        relay = self.relays.get(site.name)
        argv = supernode_command(
            f"{HOST}:{relay.port if relay else self.superlink_port}",
            self.site_ports[index],
            ca_cert=self.tls.ca_cert if self.tls else None,
            private_key=key,
            node_config=site.node_config,
        )
        env = {**self.flower.env, "FEDSKIP_CLIENT_THREADS": str(self.opt.client_threads)}
        proc = self.sup.start(
            site.name, argv, log=self.logs / f"{site.name}.log", env=env, cwd=self.out
        )
        wait_for_port(proc, HOST, self.site_ports[index], timeout=self.opt.startup_timeout)
        return proc

    def wait_online(self) -> None:
        """Wait until the SuperLink lists every site's SuperNode as online.

        Each SuperNode logs ``SuperNode ID: ...`` once the SuperLink has accepted it; the
        SuperLink is asked (one ``flwr`` call, about a second) only after every site has.
        """
        deadline = time.monotonic() + self.opt.startup_timeout
        online: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._check_sites_alive()
            logs = [self.sup.get(s.name).log_path for s in self.sites]
            if all(ONLINE_MARK in p.read_text(encoding="utf-8", errors="replace") for p in logs):
                online = [n for n in self.flower.nodes() if n.get("status") == "online"]
                if len(online) >= len(self.sites):
                    self.event("sites-online", sites=len(online))
                    return
            time.sleep(0.25)
        raise DeploymentError(
            f"only {len(online)} of {len(self.sites)} SuperNodes came online within "
            f"{self.opt.startup_timeout:.0f} s; see {self.logs}/site-*.log"
        )

    def _check_sites_alive(self) -> None:
        for site in self.sites:
            proc = self.sup.get(site.name)
            if not proc.alive() and not proc.stopping:
                raise DeploymentError(
                    f"SuperNode {site.name} exited with status {proc.returncode}; see "
                    f"{proc.log_path}: {proc.log_tail()}"
                )

    def start_probe(self) -> ManagedProcess:
        """Start a SuperNode whose key was never registered (it must be refused)."""
        keys = generate_node_keys(self.out / "pki" / "unregistered", "intruder")
        argv = supernode_command(
            f"{HOST}:{self.superlink_port}",
            self.probe_port,
            ca_cert=self.tls.ca_cert if self.tls else None,
            private_key=keys.private_key,
            node_config={},
        ) + ["--max-retries", "1"]
        return self.sup.start(
            "intruder", argv, log=self.logs / "intruder.log", env=self.flower.env, cwd=self.out
        )

    def check_probe_refused(self, proc: ManagedProcess) -> int:
        """Wait for the unregistered SuperNode to exit; it must have been refused."""
        try:
            code = proc.popen.wait(timeout=self.opt.startup_timeout)
        except subprocess.TimeoutExpired:
            self.sup.stop(proc.name)
            raise DeploymentError(
                f"a SuperNode with an unregistered key was not refused; see {proc.log_path}"
            ) from None
        proc.stopping = True
        log = proc.log_path.read_text(encoding="utf-8", errors="replace")
        if code == 0 or AUTH_REFUSED_MARK not in log:
            raise DeploymentError(
                f"unregistered SuperNode exited with {code} without being refused "
                f"({AUTH_REFUSED_MARK!r} not in its log); see {proc.log_path}: {proc.log_tail()}"
            )
        self.event("unregistered-node-refused", exit_code=code)
        return code

    def coordinator_overrides(self) -> dict[str, Scalar]:
        """What the coordinator's run config changes: the absolute run directory, and
        ``opt.run_config`` (e.g. no data path: the data lives at the sites)."""
        return {**self.opt.run_config, "out": str(self.out)}

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop every process (SuperNodes, then the SuperLink); write ``processes.json`` and
        ``deployment.json``."""
        self.memory.stop()
        self.sup.stop_all()
        for relay in self.relays.values():
            relay.stop()
        leftovers = [m.name for m in self.sup.processes.values() if m.alive()]
        if leftovers:  # pragma: no cover - terminate_tree waits for every process
            raise RuntimeError(f"processes still running: {leftovers}")
        if self.superlink_port:
            self.record_measurements()
            self.write_record()

    def record_measurements(self) -> None:
        """``processes.json`` and one event per process tree (peak memory) and per relay."""
        self.memory.write(self.out / "processes.json")
        for name, tree in self.memory.trees.items():
            if tree.processes:
                top = max(tree.processes.values(), key=lambda p: p.peak_rss)
                self.event(
                    "peak-memory",
                    tree=name,
                    pss_gib=round(tree.peak_pss / 2**30, 3),
                    processes=len(tree.processes),
                    largest=f"{top.name}:{top.peak_rss / 2**30:.3f}GiB",
                )
        for name, relay in self.relays.items():
            self.event("wire-bytes", site=name, up=relay.up.tcp_bytes, down=relay.down.tcp_bytes)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is KeyboardInterrupt:
            self.status = "interrupted"
        elif exc_type is not None and self.status in ("not started", "running"):
            self.status = "failed"
        self.close()


def deploy_local(
    cfg: Config, sites: Sequence[Site], out: Path, options: Options, *, version: str
) -> dict[str, Any]:
    """Start the deployment, run the federation to its end, stop every process.

    Processes are stopped also on failure, Ctrl-C, SIGTERM or SIGHUP. Returns Flower's record
    of the (last) run; raises :class:`DeploymentError` if it did not complete.
    """
    from fedskip.deploy.drive import RunDriver
    from fedskip.fl.stop import interrupts_as_exceptions

    with (
        interrupts_as_exceptions(),
        LocalDeployment(cfg, sites, out, options, version=version) as dep,
    ):
        dep.start()
        info = RunDriver(dep).run()
        dep.status = str(info.get("status", "finished"))
        return info
