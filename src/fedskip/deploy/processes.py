"""Start and stop the processes of a deployment without leaving orphans behind.

Flower's long-running processes spawn children: a SuperNode starts ``flower-superexec``, which
starts one ``flwr-clientapp`` per task; the SuperLink starts its own ``flower-superexec`` (in a
new session) and that one starts ``flwr-serverapp``. The children notice their parent's death
only seconds later, so stopping just the top process leaves them running (and holding ports,
GPU memory or data files) for a while.

:class:`ProcessSupervisor` therefore starts each top process in its own process group, keeps
track of every descendant it has seen, and stops a process by signalling all of their groups:
SIGTERM first, SIGKILL after a grace period, then waits until each one is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import psutil

from fedskip.errors import FedskipError
from fedskip.fl.stop import STOP_SIGNALS, Handler, handlers_installed

DEFAULT_GRACE_S = 10.0
"""Seconds a process gets to exit after SIGTERM before it is killed."""


class DeploymentError(FedskipError):
    """A deployment process failed to start or a run failed; names the log file to read."""


@dataclass
class ManagedProcess:
    """One started top-level process, its log file and every descendant seen so far."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once exited (negative: killed by that signal), else None."""
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def refresh(self) -> list[psutil.Process]:
        """Record the current descendants (so they can be stopped after their parent died)."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            children = []
        children.extend(_group_members(self.pid, self.started_at))
        for child in children:
            self.seen.setdefault(child.pid, child)
        return children

    def log_tail(self, lines: int = 5) -> str:
        """The last ``lines`` non-empty lines of the process's log (for error messages)."""
        return tail_text(self.log_path, lines)


@contextlib.contextmanager
def interrupts_deferred(signals: Sequence[signal.Signals] = STOP_SIGNALS) -> Iterator[None]:
    """Hold ``signals`` back while the block runs and deliver the first one when it ends.

    Starting a child and recording it are two steps: a Ctrl-C between them (inside
    ``Popen()``, after the fork) would leave a child that nothing stops. The held signal goes
    to the handler that was in place (so Ctrl-C still raises KeyboardInterrupt, only later);
    one whose default is to end the process is raised again. Outside the main thread it
    changes nothing.
    """
    caught: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append((signum, frame))

    previous: dict[int, Handler] = {}
    try:
        with handlers_installed(signals, hold) as previous:
            yield
    finally:
        if caught:
            first, frame = caught[0]
            handler = previous.get(first)
            if callable(handler):
                handler(first, frame)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(first)


def run_captured(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)`` that never leaves the child
    behind: an interrupt cannot land between its start and its being known, and any exception
    while it runs (``TimeoutExpired``, KeyboardInterrupt) kills and reaps it before it
    propagates."""
    proc: subprocess.Popen[str] | None = None
    try:
        with interrupts_deferred():
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=dict(env) if env is not None else None,
            )
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def tail_text(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _group_members(pgid: int, since: float) -> list[psutil.Process]:
    """Processes in group ``pgid`` created after ``since`` (epoch s), e.g. orphans of a dead
    group leader; none if another process has meanwhile taken the leader's pid."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
        leader = psutil.Process(pgid)
        if leader.create_time() < since - 1.0:
            return []  # the pid was reused by an older process: not our group
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if (
                proc.pid != pgid
                and os.getpgid(proc.pid) == pgid
                and proc.create_time() >= since - 1.0
            ):
                members.append(proc)
    return members


def _running(proc: psutil.Process) -> bool:
    """True while ``proc`` (same pid *and* start time) runs and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _signal_all(procs: Sequence[psutil.Process], groups: set[int], sig: int) -> None:
    own_group = os.getpgrp()
    for pgid in groups - {own_group}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if _running(proc):
                proc.send_signal(sig)


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for ``procs`` to exit; return those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def _groups_of(procs: Sequence[psutil.Process]) -> set[int]:
    groups = set()
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _running(proc):
                groups.add(os.getpgid(proc.pid))
    return groups


def terminate_tree(
    managed: ManagedProcess, *, grace: float = DEFAULT_GRACE_S, first_signal: int = signal.SIGTERM
) -> int | None:
    """Stop ``managed`` and every descendant: ``first_signal``, then SIGKILL after ``grace`` s.

    Returns the top process's exit status. Processes in other sessions (Flower's SuperLink
    starts its SuperExec with a new session) are reached through the descendants recorded by
    :meth:`ManagedProcess.refresh` and their process groups.
    """
    managed.stopping = True
    managed.refresh()
    procs = list(managed.seen.values())
    if managed.alive():  # once reaped, its pid may belong to someone else
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(managed.pid))
    _signal_all(procs, _groups_of(procs), first_signal)
    if first_signal != signal.SIGKILL:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if managed.alive():
                procs.extend(c for c in managed.refresh() if c not in procs)
            procs = [p for p in procs if _running(p)]
            if not procs:
                break
            time.sleep(0.05)
        if procs:
            _signal_all(procs, _groups_of(procs), signal.SIGKILL)
    _wait_gone(procs, 5.0)
    return managed.popen.wait()


class ProcessSupervisor:
    """Owns the processes of one deployment; :meth:`stop_all` (also on exit) stops every one.

    Use as a context manager: leaving the block — normally, on an exception or on Ctrl-C —
    stops every process that is still running, newest first.
    """

    def __init__(self, *, grace: float = DEFAULT_GRACE_S) -> None:
        self.grace = grace
        self.processes: dict[str, ManagedProcess] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` in a new session (own process group), stdout+stderr appended to ``log``."""
        if name in self.processes and self.processes[name].alive():
            raise RuntimeError(f"process {name!r} is already running")
        log.parent.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        # a Ctrl-C is delivered once the process is recorded, so stop_all() can stop it
        with log.open("ab") as fh, interrupts_deferred():
            fh.write(f"$ {' '.join(argv)}\n".encode())
            fh.flush()
            popen = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
            managed = ManagedProcess(
                name=name, argv=list(argv), log_path=log, popen=popen, started_at=started_at
            )
            self.processes[name] = managed
        return managed

    def get(self, name: str) -> ManagedProcess:
        return self.processes[name]

    def refresh(self) -> None:
        """Record current descendants of every process (call periodically while running)."""
        for managed in self.processes.values():
            if managed.alive():
                managed.refresh()

    def stop(self, name: str, *, grace: float | None = None) -> int | None:
        """SIGTERM ``name`` and its descendants, SIGKILL after the grace period, wait."""
        return terminate_tree(self.processes[name], grace=self.grace if grace is None else grace)

    def kill(self, name: str) -> int | None:
        """SIGKILL ``name`` and all its descendants at once (a crash, for fault drills)."""
        return terminate_tree(self.processes[name], first_signal=signal.SIGKILL)

    def unexpected_exits(self) -> list[ManagedProcess]:
        """Processes that exited although nobody asked them to stop."""
        return [m for m in self.processes.values() if not m.stopping and not m.alive()]

    def stop_all(self) -> None:
        """Stop every process, newest first (SuperNodes before the SuperLink)."""
        for name in reversed(list(self.processes)):
            terminate_tree(self.processes[name], grace=self.grace)

    def __enter__(self) -> ProcessSupervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (the OS picks them)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(managed: ManagedProcess, host: str, port: int, *, timeout: float) -> None:
    """Wait until ``managed`` listens on ``host:port``; raise if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if not managed.alive():
            raise DeploymentError(
                f"{managed.name} exited with status {managed.returncode} before listening on "
                f"{host}:{port}; see {managed.log_path}: {managed.log_tail()}"
            )
        time.sleep(0.1)
    raise DeploymentError(
        f"{managed.name} did not listen on {host}:{port} within {timeout:.0f} s; "
        f"see {managed.log_path}: {managed.log_tail()}"
    )
