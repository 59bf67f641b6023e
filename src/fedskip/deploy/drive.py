"""Submit the run to a started :class:`~fedskip.deploy.local.LocalDeployment` and see it through.

The loop streams the ServerApp's output (``flwr log``), follows the rounds the ServerApp records
in ``metrics.jsonl``, notices SuperNodes that die, injects the configured fault drills and ends
when Flower reports the run finished. A SuperLink restart (drill) is followed by a new
``flwr run`` with ``resume=true``, which continues from the last checkpoint.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fedskip.deploy.flower import write_run_config
from fedskip.deploy.monitor import (
    LogTail,
    TrainTasks,
    checkpoint_round,
    completed_rounds,
    flower_log_line,
    round_rows,
)
from fedskip.deploy.processes import DeploymentError, ManagedProcess

if TYPE_CHECKING:
    from fedskip.deploy.local import LocalDeployment

POLL_S = 0.25
"""Seconds between two looks at the processes, the log stream and the run records."""


class RunDriver:
    """One federated run on a started deployment, across SuperLink restarts."""

    def __init__(self, dep: LocalDeployment) -> None:
        self.dep = dep
        self.run_id = 0
        self.stream: ManagedProcess | None = None
        self.tail: LogTail | None = None
        self.site_killed = False
        self.site_tasks: TrainTasks | None = None
        self.superlink_restarted = False
        self.reported_exits: set[str] = set()

    # ------------------------------------------------------------------ submit / stream
    def submit(self, *, resume: bool) -> int:
        dep = self.dep
        run_config = write_run_config(
            dep.out / "app" / "run-config.toml",
            dep.cfg,
            resume=resume,
            **dep.coordinator_overrides(),
        )
        self.run_id = dep.flower.submit(dep.out / "app", run_config)
        dep.run_ids.append(self.run_id)
        dep.status = "running"
        dep.event("run-submitted", run_id=self.run_id, resume=resume)
        dep.write_record()
        self.open_stream()
        return self.run_id

    def open_stream(self) -> None:
        dep = self.dep
        log = dep.logs / f"run-{self.run_id}.log"
        name = f"stream-{self.run_id}"
        if name in dep.sup.processes:
            dep.sup.processes.pop(name)
        self.stream = dep.sup.start(
            name, dep.flower.log_command(self.run_id), log=log, env=dep.flower.env, cwd=dep.out
        )
        if self.tail is None or self.tail.path != log:
            self.tail = LogTail(log)

    def echo_stream(self) -> None:
        if self.tail is None:
            return
        for line in self.tail.read_lines():
            text = flower_log_line(line)
            if text and not text.startswith("$ flwr"):
                self.dep.opt.echo(text)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Drive the run to its end; returns Flower's final record of it."""
        dep = self.dep
        self.submit(resume=dep.cfg.resume)
        deadline = None if dep.opt.run_timeout is None else time.monotonic() + dep.opt.run_timeout
        while True:
            dep.sup.refresh()
            self.echo_stream()
            self.watch_sites()
            self.check_superlink()
            self.drills()
            finished = self.check_stream()
            if finished is not None:
                return finished
            if deadline is not None and time.monotonic() > deadline:
                raise DeploymentError(
                    f"run {self.run_id} did not finish within {dep.opt.run_timeout:.0f} s; "
                    f"see {dep.logs}"
                )
            time.sleep(POLL_S)

    def check_stream(self) -> dict[str, Any] | None:
        """When the log stream ends: Flower's run record if the run is over, else reconnect."""
        if self.stream is None or self.stream.alive():
            return None
        self.stream.stopping = True
        self.echo_stream()
        info = self.dep.flower.run_info(self.run_id)
        status = str(info.get("status", ""))
        if not status.startswith("finished"):
            self.open_stream()  # the stream dropped while the run goes on
            return None
        self.dep.status = status
        self.dep.event(
            "run-finished",
            run_id=self.run_id,
            status=status,
            details=info.get("status-details", ""),
        )
        if status != "finished:completed":
            raise DeploymentError(
                f"run {self.run_id} ended as {status} ({info.get('status-details', '')}); "
                f"see {self.dep.logs}/run-{self.run_id}.log and site logs"
            )
        self.check_rounds()
        return info

    def check_rounds(self) -> None:
        """Record rounds the ServerApp marked failed; fail if no round succeeded."""
        rows = round_rows(self.dep.out)
        failed = [row["round"] for row in rows if row.get("status") == "failed"]
        if failed:
            self.dep.event("rounds-failed", rounds=failed)
        if rows and len(failed) == len(rows):
            self.dep.status = "failed"
            raise DeploymentError(
                f"run {self.run_id} finished but every round failed (no valid client replies); "
                f"see {self.dep.out}/metrics.jsonl and {self.dep.logs}/<site>.log"
            )

    def watch_sites(self) -> None:
        """Record (once) any SuperNode that exited without being asked to."""
        for site in self.dep.sites:
            proc = self.dep.sup.get(site.name)
            if proc.alive() or site.name in self.reported_exits:
                continue
            self.reported_exits.add(site.name)
            if not proc.stopping:
                self.dep.event(
                    "site-exited",
                    site=site.name,
                    exit_code=proc.returncode,
                    round=completed_rounds(self.dep.out) + 1,
                    log=str(proc.log_path),
                )

    def check_superlink(self) -> None:
        proc = self.dep.sup.get("superlink")
        if not proc.alive() and not proc.stopping:
            raise DeploymentError(
                f"the SuperLink exited with status {proc.returncode}; see {proc.log_path}: "
                f"{proc.log_tail()}"
            )

    # ------------------------------------------------------------------ drills
    def drills(self) -> None:
        drills = self.dep.opt.drills
        done = completed_rounds(self.dep.out)
        if drills.kill_site is not None and not self.site_killed:
            index, round_ = drills.kill_site
            site = self.dep.sites[index]
            if self.site_tasks is None or self.site_tasks.run_id != self.run_id:
                self.site_tasks = TrainTasks(self.dep.sup.get(site.name).log_path, self.run_id)
            if self.site_tasks.in_progress() and done >= round_ - 1:
                self.site_killed = True
                self.reported_exits.add(site.name)
                code = self.dep.sup.kill(site.name)
                self.dep.event("drill-site-killed", site=site.name, round=done + 1, exit_code=code)
        after = drills.restart_superlink_after
        if after is not None and not self.superlink_restarted:
            saved = checkpoint_round(self.dep.out)  # the round a restart resumes after
            if saved >= after:
                self.superlink_restarted = True
                self.restart_superlink(saved)

    def restart_superlink(self, done: int) -> None:
        """Crash the SuperLink (and its ServerApp), start it again, resume the run."""
        dep = self.dep
        old_run = self.run_id
        if self.stream is not None:
            dep.sup.stop(self.stream.name, grace=2.0)
        code = dep.sup.kill("superlink")
        dep.event("drill-superlink-killed", after_round=done, exit_code=code, run_id=old_run)
        dep.start_superlink()
        dep.wait_online()
        info = dep.flower.run_info(old_run)
        if not str(info.get("status", "")).startswith("finished"):
            dep.flower.stop_run(old_run)
        self.submit(resume=True)
