"""Process cleanup: a stopped process leaves no descendants behind — not in its own group, not
in another session (like Flower's SuperLink's SuperExec), not when SIGTERM is ignored, not
after the parent died first — and ports are reported free/busy correctly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fedskip.deploy import processes
from fedskip.deploy.processes import (
    DeploymentError,
    ProcessSupervisor,
    free_ports,
    interrupts_deferred,
    port_open,
    run_captured,
    wait_for_port,
)
from fedskip.fl.stop import interrupts_as_exceptions

# A parent that starts one child in its own process group and one in a new session (as
# flower-superlink does with flower-superexec), writes their pids, then waits.
TREE = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    ignore = sys.argv[2] == "ignore-term"
    sleeper = [sys.executable, "-c",
               "import signal, time\\n"
               + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore else "")
               + "time.sleep(600)"]
    same_group = subprocess.Popen(sleeper)
    new_session = subprocess.Popen(sleeper, start_new_session=True)
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(f"{same_group.pid} {new_session.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    if sys.argv[3] == "exit":  # crash once the test has seen the children
        while not os.path.exists(sys.argv[1] + ".go"):
            time.sleep(0.02)
        os._exit(3)
    time.sleep(600)
    """
)


def _start_tree(
    sup: ProcessSupervisor,
    tmp_path: Path,
    mode: str = "term",
    end: str = "wait",
    observe: bool = True,
) -> tuple[int, int]:
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    pids_file = tmp_path / f"pids-{len(sup.processes)}"
    managed = sup.start(
        f"tree-{len(sup.processes)}",
        [sys.executable, str(script), str(pids_file), mode, end],
        log=tmp_path / "logs" / "tree.log",
    )
    deadline = time.monotonic() + 30
    while not pids_file.exists():  # wait for the children to exist, not for a fixed time
        assert time.monotonic() < deadline, managed.log_tail()
        time.sleep(0.02)
    same, new = (int(x) for x in pids_file.read_text().split())
    if observe:
        managed.refresh()
    Path(f"{pids_file}.go").touch()
    return same, new


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_reaches_same_group_and_new_session_children(tmp_path: Path) -> None:
    sup = ProcessSupervisor(grace=10)
    same, new = _start_tree(sup, tmp_path)
    top = sup.get("tree-0")
    assert os.getpgid(top.pid) == top.pid and os.getpgid(new) == new
    assert sup.stop("tree-0") == -signal.SIGTERM
    assert _gone(same) and _gone(new) and _gone(top.pid)
    assert sup.unexpected_exits() == []


def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    sup = ProcessSupervisor(grace=0.5)
    same, new = _start_tree(sup, tmp_path, mode="ignore-term")
    assert sup.stop("tree-0") == -signal.SIGKILL
    assert _gone(same) and _gone(new)


def test_kill_is_immediate_sigkill(tmp_path: Path) -> None:
    sup = ProcessSupervisor(grace=60)
    same, new = _start_tree(sup, tmp_path, mode="ignore-term")
    assert sup.kill("tree-0") == -signal.SIGKILL
    assert _gone(same) and _gone(new)


def test_orphans_of_a_crashed_parent_are_stopped(tmp_path: Path) -> None:
    sup = ProcessSupervisor(grace=5)
    same, new = _start_tree(sup, tmp_path, end="exit")
    top = sup.get("tree-0")
    assert top.popen.wait(timeout=30) == 3
    assert [m.name for m in sup.unexpected_exits()] == ["tree-0"]
    assert not _gone(same) and not _gone(new)  # the parent died, its children did not
    sup.stop_all()
    assert _gone(same) and _gone(new)


def test_unobserved_orphans_in_the_group_are_stopped(tmp_path: Path) -> None:
    sup = ProcessSupervisor(grace=5)
    same, new = _start_tree(sup, tmp_path, end="exit", observe=False)
    assert sup.get("tree-0").popen.wait(timeout=30) == 3
    sup.stop_all()  # finds the orphan through its process group
    assert _gone(same)
    assert not _gone(new)  # another session and never observed: out of reach by design
    os.kill(new, signal.SIGKILL)


def test_context_manager_stops_everything_on_error(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), ProcessSupervisor(grace=5) as sup:
        pids.extend(_start_tree(sup, tmp_path))
        pids.extend(_start_tree(sup, tmp_path))
        pids.extend(m.pid for m in sup.processes.values())
        raise RuntimeError("boom")
    assert len(pids) == 6 and all(_gone(pid) for pid in pids)


def test_start_refuses_a_running_name(tmp_path: Path) -> None:
    with ProcessSupervisor(grace=5) as sup:
        _start_tree(sup, tmp_path)
        with pytest.raises(RuntimeError, match="already running"):
            sup.start("tree-0", [sys.executable, "-c", "pass"], log=tmp_path / "x.log")


def test_log_receives_command_line_and_output(tmp_path: Path) -> None:
    sup = ProcessSupervisor()
    managed = sup.start(
        "echo", [sys.executable, "-c", "print('hello'); print('world')"], log=tmp_path / "e.log"
    )
    assert managed.popen.wait(timeout=30) == 0
    lines = (tmp_path / "e.log").read_text().splitlines()
    assert lines[0].startswith("$ ") and lines[1:] == ["hello", "world"]
    assert managed.log_tail(1) == "world"


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_port_open_and_wait_for_port(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    assert not port_open("127.0.0.1", port)
    code = f"import socket, time\ns = socket.create_server(('127.0.0.1', {port}))\ntime.sleep(600)"
    with ProcessSupervisor(grace=5) as sup:
        managed = sup.start("listener", [sys.executable, "-c", code], log=tmp_path / "l.log")
        wait_for_port(managed, "127.0.0.1", port, timeout=30)
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port)


def test_wait_for_port_reports_an_early_exit(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    code = "import sys; print('cannot bind'); sys.exit(4)"
    sup = ProcessSupervisor()
    managed = sup.start("broken", [sys.executable, "-c", code], log=tmp_path / "b.log")
    with pytest.raises(DeploymentError, match=r"broken exited with status 4 .*cannot bind"):
        wait_for_port(managed, "127.0.0.1", port, timeout=60)


def test_sigterm_becomes_keyboard_interrupt() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), interrupts_as_exceptions():
        os.kill(os.getpid(), signal.SIGTERM)
        _spin(30)  # not reached: the handler raises at the next bytecode check
    assert signal.getsignal(signal.SIGTERM) == before


def _spin(seconds: float) -> None:
    """Run bytecode for ``seconds`` (a pending Python signal handler runs at the next check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a terminal, even when the test run was started
    in the background (which leaves SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_held_until_the_block_ends_then_raised(ctrl_c_raises: None) -> None:
    reached_end = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        _spin(0.5)  # held: no KeyboardInterrupt inside the block
        reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_held_sigterm_goes_to_the_handler_in_place() -> None:
    reached_end = False
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), interrupts_as_exceptions():
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            _spin(0.5)  # held: the handler in place does not run inside the block
            reached_end = True
        _spin(30)  # not reached: the handler raised when the block ended
    assert reached_end


def test_run_captured_returns_output_and_status() -> None:
    done = run_captured([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"])
    assert (done.returncode, done.stdout) == (3, "out\n")


def _children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE]


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_run_captured_kills_its_child_on_ctrl_c_and_on_timeout(ctrl_c_raises: None) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run_captured(SLEEPER, timeout=0.5)
    assert _children() == []
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_captured(SLEEPER)
    timer.join()
    assert _children() == []


def _ctrl_c_right_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``Popen()`` of the processes module end with a Ctrl-C, as if the user hit it
    while the child was being started."""
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        child = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        _spin(0.2)  # without the deferral, KeyboardInterrupt would end Popen() here
        return child

    monkeypatch.setattr(processes.subprocess, "Popen", popen)


def test_ctrl_c_while_a_process_starts_leaves_it_recorded_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ctrl_c_raises: None
) -> None:
    _ctrl_c_right_after_fork(monkeypatch)
    with pytest.raises(KeyboardInterrupt), ProcessSupervisor(grace=5) as sup:
        sup.start("sleeper", SLEEPER, log=tmp_path / "s.log")
    assert not sup.get("sleeper").alive()
    assert _children() == []


def test_ctrl_c_while_a_cli_call_starts_leaves_no_child(
    monkeypatch: pytest.MonkeyPatch, ctrl_c_raises: None
) -> None:
    _ctrl_c_right_after_fork(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_captured(SLEEPER)
    assert _children() == []
