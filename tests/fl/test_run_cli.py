"""``fedskip run``: the whole path on Flower's Simulation Engine, and its input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedskip.cli import main

TINY = ["model=llama-tiny", "device=cpu", "max-length=16", "stride=4", "batch-size=2", "layers=1"]


@pytest.mark.slow
def test_two_round_simulation_end_to_end(
    sites: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["run", "--quiet", "--set", f"data={sites}", f"out={out}", "rounds=2", *TINY])
    printed = capsys.readouterr().out
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert all(r["status"] == "ok" and r["replies_ok"] == 3 and r["bytes_up"] > 0 for r in rows)
    assert rows[1]["cum_bytes"] == sum(r["bytes_down"] + r["bytes_up"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 2 and 0.9 < summary["reduction"] < 1.0
    assert f"final F1 {summary['final_metric']:.4f}" in printed
    assert "reduction vs full-model FedAvg" in printed
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(out / "model")
    assert model.config.num_labels == 7
    assert (out / "checkpoint" / "state.json").is_file() and (out / "run.log").is_file()


def test_resume_needs_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory (no config.json) for --resume" in capsys.readouterr().err


def test_resume_needs_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model": "llama-tiny"}))
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_resume_refuses_a_damaged_checkpoint_before_the_federation_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from fedskip.records.checkpoint import Checkpoint, save_checkpoint

    (tmp_path / "config.json").write_text(json.dumps({"model": "llama-tiny"}))
    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={"w": np.zeros(8, np.float32)}))
    damaged = tmp_path / "checkpoint" / "global.npz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: unreadable checkpoint (missing, or not a .npz archive)" in err
    assert "Traceback" not in err


def test_resume_refuses_non_federated_runs_and_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"method": "local"}))
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "method=local runs are not resumable" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path), "--config", "x.toml"]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_resume_config_keeps_the_run_and_applies_overrides(tmp_path: Path) -> None:
    import argparse

    from fedskip.commands.run import resume_config
    from fedskip.records.checkpoint import Checkpoint, save_checkpoint

    (tmp_path / "config.json").write_text(
        json.dumps({"rounds": 2, "layers": 3, "out": "elsewhere"})
    )
    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}))
    args = argparse.Namespace(
        resume=str(tmp_path), config=None, overrides=[["rounds=4"]], quiet=True
    )
    cfg = resume_config(args)
    assert (cfg.rounds, cfg.layers, cfg.out, cfg.resume, cfg.quiet) == (
        4,
        3,
        str(tmp_path),
        True,
        True,
    )


@pytest.mark.parametrize(
    ("pair", "key"),
    [
        ("data=/elsewhere/other-hospitals", "data"),  # other notes under the same records
        ("seed=7", "seed"),  # another split, init and sampling
        ("model=minilm", "model"),
        ("task=classification", "task"),
        ("method=fedprox", "method"),
        ("layers=3", "layers"),
        ("test-fraction=0.5", "test-fraction"),
        ("dp=sample", "dp"),
        ("compression=int8", "compression"),
    ],
)
def test_resume_refuses_a_changed_run(
    pair: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedskip.config import Config
    from fedskip.records.checkpoint import Checkpoint, save_checkpoint

    saved = Config(data="/data/hospitals", model="llama-tiny", seed=42, rounds=2, layers=1)
    (tmp_path / "config.json").write_text(json.dumps(saved.to_run_config()))
    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}))
    assert main(["run", "--resume", str(tmp_path), "--set", pair, "rounds=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedskip: error: config key '{key}': cannot change when resuming")
    assert len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "config.json").read_text()) == saved.to_run_config()


def test_resume_may_change_how_long_and_where_it_runs(tmp_path: Path) -> None:
    import argparse

    from fedskip.commands.run import resume_config
    from fedskip.config import Config
    from fedskip.records.checkpoint import Checkpoint, save_checkpoint

    (tmp_path / "config.json").write_text(json.dumps(Config(rounds=2).to_run_config()))
    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}))
    pairs = ["rounds=5", "device=cpu", "activation-cache=off", "tracking=tensorboard"]
    args = argparse.Namespace(resume=str(tmp_path), config=None, overrides=[pairs], quiet=False)
    cfg = resume_config(args)
    assert (cfg.rounds, cfg.device, cfg.activation_cache, cfg.tracking) == (
        5,
        "cpu",
        "off",
        "tensorboard",
    )
    assert cfg.data == "synth" and cfg.seed == 42


def test_a_resumed_run_keeps_the_wire_it_started_with(tmp_path: Path) -> None:
    """``compression=auto`` meant fp16 until 2026-12-07 and int8 since: a run resumes in the
    scheme its checkpoint records (``totals.wire``), or fp16 for an older checkpoint, and a
    deployment's ServerApp whose ``auto`` now means another scheme refuses with the fix."""
    import argparse
    from types import SimpleNamespace

    from fedskip.commands.run import resume_config
    from fedskip.config import Config, ConfigError
    from fedskip.fl.server import refuse_another_run
    from fedskip.records.checkpoint import Checkpoint, save_checkpoint
    from fedskip.records.rundir import RunDir

    (tmp_path / "config.json").write_text(json.dumps(Config(rounds=2).to_run_config()))

    def resumed(*pairs: str) -> Config:
        args = argparse.Namespace(
            resume=str(tmp_path), config=None, overrides=[list(pairs)], quiet=True
        )
        return resume_config(args)

    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}))  # before the wire was kept
    assert (resumed().compression, resumed().wire_compression) == ("fp16", "fp16")
    assert resumed("compression=fp16").wire_compression == "fp16"  # the same run
    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}, totals={"wire": "int8"}))
    assert (resumed().compression, resumed().wire_compression) == ("int8", "int8")

    save_checkpoint(tmp_path, Checkpoint(round=1, global_state={}))
    server = SimpleNamespace(rundir=RunDir(tmp_path), cfg=Config(rounds=2, resume=True))
    with pytest.raises(ConfigError) as caught:
        refuse_another_run(server)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"{tmp_path / 'config.json'}: config key 'compression': cannot change when resuming "
        "(the run has 'fp16', not 'int8'); only activation-cache, activation-cache-mb, device, "
        "min-delta, min-rounds, mlflow-uri, patience, quiet, rounds, tracking may change; start "
        "a new run in another out folder instead (compression=auto meant fp16 when it "
        "started: set compression=fp16)"
    )
    refuse_another_run(  # the regenerated app pins the run's wire: accepted
        SimpleNamespace(rundir=RunDir(tmp_path), cfg=Config(rounds=2, compression="fp16"))  # type: ignore[arg-type]
    )


def test_unknown_key_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--set", "roundz=3"]) == 2
    assert (
        "unknown config key 'roundz'; did you mean rounds, min-rounds?" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("cpus", "clients", "expected"),
    [(2, 4, (2, 1)), (16, 50, (4, 4)), (16, 2, (2, 8)), (1, 3, (1, 1))],
)
def test_parallel_clients_fit_the_machine(
    cpus: int, clients: int, expected: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from fedskip.config import Config
    from fedskip.runs.simulation import backend_config, parallel_clients

    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert parallel_clients(clients) == expected
    backend = backend_config(Config(device="cpu"), clients)
    assert backend["client_resources"] == {"num_cpus": expected[1], "num_gpus": 0.0}
    assert backend["init_args"]["num_cpus"] == expected[0] * expected[1]


def test_parallel_clients_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from fedskip.errors import ConfigError
    from fedskip.runs.simulation import PARALLEL_ENV, parallel_clients

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setenv(PARALLEL_ENV, "1")
    assert parallel_clients(8) == (1, 16)
    monkeypatch.setenv(PARALLEL_ENV, "64")  # never above the machine's own cap
    assert parallel_clients(8) == (4, 4)
    monkeypatch.setenv(PARALLEL_ENV, "zero")
    with pytest.raises(ConfigError, match="FEDSKIP_PARALLEL_CLIENTS='zero'"):
        parallel_clients(8)


@pytest.mark.slow
def test_local_method_trains_each_site_alone(
    sites: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "local"
    code = main(
        [
            "run",
            "--quiet",
            "--set",
            "method=local",
            "epochs=1",
            f"data={sites}",
            f"out={out}",
            *TINY,
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["site"] for s in summary["sites"]] == ["site-0", "site-1", "site-2"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["client"], r["epoch"]) for r in rows] == [(0, 1), (1, 1), (2, 1)]
    values = [s["f1"] for s in summary["sites"]]
    assert summary["final_metric"] == pytest.approx(sum(values) / 3)
    assert summary["best_metric"] == summary["final_metric"]  # one epoch: its mean is the best
    assert all("f1" in s["own_test"] for s in summary["sites"])  # the site's own test split
    assert "mean over sites f1" in capsys.readouterr().out
    assert not (out / "model").exists()


FEDSKIP_LINES = (
    "fedskip: ",
    "round ",
    "final ",
    "per site ",
    "  per site ",
    "bytes exchanged: ",
    "reduction vs ",
    "wall time ",
    "next:",
    "  report: ",
    "  fedskip predict ",
    "  tensorboard --logdir ",
    "  mlflow ui ",
)
"""How every console line of a federated ``fedskip run`` begins (progress lines begin with
``round R/N:`` when the console is not a terminal)."""


@pytest.mark.slow
def test_console_shows_fedskip_lines_only_and_run_log_keeps_the_rest(
    sites: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    import fedskip

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(fedskip.__file__).parents[1])}
    sets = [f"data={sites}", f"out={out}", "rounds=1", "tracking=tensorboard,mlflow", *TINY]
    done = subprocess.run(
        [sys.executable, "-m", "fedskip.cli", "run", "--set", *sets],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert all(line.startswith(FEDSKIP_LINES) for line in lines), lines
    results = [line for line in lines if not line.startswith(("round 1/1:", "  "))]
    assert [line.split(" ")[0] for line in results] == [
        "fedskip:",
        "round",
        "final",
        "per",
        "bytes",
        "reduction",
        "wall",
        "next:",
    ], results  # the header, the round's result, the run's results and the next commands
    assert lines[-4:] == [  # next: the run's report, predict, and the trackers' own viewers
        f"  report: {out}/report.md (plots in {out}/plots; compare with other runs: fedskip report {out} OTHER_RUN...)",
        f"  fedskip predict --model {out}/model --text 'the note text'",
        f"  tensorboard --logdir {out}/tensorboard",
        f'  mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db (after pip install "fedskip[mlflow]")',
    ]
    log = (out / "run.log").read_text("utf-8")
    assert "Manually terminating ClientAppActor" in log and "[worker " in log
    assert (out / "mlflow.db").is_file() and any((out / "tensorboard").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_simulated_run_and_leaves_a_resumable_checkpoint(
    name: str, sites: Path, tmp_path: Path
) -> None:
    """SIGTERM (what `kill`, systemd and schedulers send) or Ctrl-C ends `fedskip run` on the
    Simulation Engine promptly, with exit code 130, a one-line message that says how to resume,
    no error or traceback on the console, no process left behind, and the last finished round's
    checkpoint kept."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fedskip.cli", "run", "--quiet", "--set", f"data={sites}"]
    cmd += [f"out={out}", "rounds=200", *TINY]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        metrics = out / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no round finished in 300 s"
            time.sleep(0.5)
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(getattr(signal, name))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"fedskip: interrupted (signal {name}; rounds finished so far are checkpointed" in err
    assert f"fedskip run --resume {out}" in err
    assert "Traceback" not in err and "ERROR" not in err
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    finished = len(metrics.read_text().splitlines())
    assert state["round"] == finished >= 1
    assert not (out / "summary.json").exists()
    assert not (out / "activation-cache").exists()  # cached hidden states removed on the way out


def _listeners(root: int) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of ``root`` and its
    descendants (what ``ss -ltnp`` shows for the process tree)."""
    import psutil

    tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    found = []
    for proc in tree:
        try:
            sockets = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:  # ended meanwhile
            continue
        found += [(name, s.laddr.ip, s.laddr.port) for s in sockets if s.status == "LISTEN"]
    return found


def _is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@pytest.mark.slow
def test_the_simulation_engine_listens_on_loopback_only(
    sites: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's GCS, raylet, workers and agents serve nothing to other hosts: during a round of
    `fedskip run`, every listening socket of the process tree is on 127.0.0.1 / ::1."""
    import os

    from fedskip.fl.server import ServerRun

    seen: list[tuple[str, str, int]] = []
    original = ServerRun.on_round_end

    def inspect(self: ServerRun, rnd: int, arrays: object, record: object) -> None:
        seen.extend(_listeners(os.getpid()))
        original(self, rnd, arrays, record)

    monkeypatch.setattr(ServerRun, "on_round_end", inspect)
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--set", f"data={sites}", f"out={out}", "rounds=1", *TINY]) == 0
    names = {name for name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # Ray's servers were running and seen
    assert all(_is_loopback(address) for _, address, _ in seen), seen


def test_ray_is_started_on_the_loopback_address() -> None:
    from fedskip.config import Config
    from fedskip.runs.simulation import LOOPBACK, backend_config

    assert backend_config(Config(device="cpu"), 2)["init_args"]["_node_ip_address"] == LOOPBACK


def test_run_closes_with_the_next_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The closing lines of ``fedskip run`` (the training itself replaced by the records of a
    two-round run): the report it left in the run directory, predict, TensorBoard."""
    import fedskip.runs
    from fedskip.records.schema import RunSummary
    from tests.bench.rundirs import federated_run

    def train(cfg: object) -> RunSummary:
        federated_run(tmp_path, method="layerskip", scores=[0.25, 0.5], bytes_per_round=1000)
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text("{}")
        summary = json.loads((tmp_path / "summary.json").read_text())
        return RunSummary(summary, out=str(tmp_path))

    monkeypatch.setattr(fedskip.runs, "run", train)
    assert main(["run", "--set", f"out={tmp_path}", "tracking=tensorboard"]) == 0
    assert capsys.readouterr().out.splitlines()[-5:] == [
        f"wall time 4.0 s; run directory: {tmp_path}",
        "next:",
        f"  report: {tmp_path / 'report.md'} (plots in {tmp_path}/plots; compare with other "
        f"runs: fedskip report {tmp_path} OTHER_RUN...)",
        f"  fedskip predict --model {tmp_path / 'model'} --text 'the note text'",
        f"  tensorboard --logdir {tmp_path / 'tensorboard'}",
    ]
    report = (tmp_path / "report.md").read_text()
    assert f"| `{tmp_path.name}` | layerskip | ner | 2 | natural | 0.500 | 0.500 |" in report
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "ner-metric-vs-mb.png",
        "ner-metric-vs-round.png",
    ]
