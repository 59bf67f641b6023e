"""Real Flower deployments on loopback: a SuperLink and two SuperNodes as separate processes,
TLS and SuperNode authentication on, each site on its own synthetic data, the fedskip app run
with ``flwr run``.

One deployment (``drilled``) carries every fault drill, so the suite starts Flower once: a
SuperNode with an unregistered key tries to join; after round 1 the SuperLink (with its
ServerApp) is killed, restarted and the run resumed from its checkpoint; in round 2 site-2's
SuperNode is killed while it trains, and the round completes with site-1. Each test below
checks one of these outcomes. A second test interrupts a deployment with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from fedskip.deploy.processes import port_open

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

TINY = [
    "model=llama-tiny",
    "synth_docs=6",
    "max_length=32",
    "stride=8",
    "batch_size=8",
    "layers=1",
    "eval_clients=false",
    "seed=7",
]


def _command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fedskip.cli",
        "deploy",
        "local",
        "--sites",
        "2",
        "--rounds",
        "2",
        "--out",
        str(out),
        "--grace",
        "5",
        *extra,
        "--set",
        *TINY,
    ]


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FEDSKIP_CACHE": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _leftovers(out: Path, ports: list[int]) -> list[str]:
    """Running processes that mention the run directory or one of the deployment's ports."""
    marks = [str(out)] + [f":{p}" for p in ports]
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            line = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if any(mark in line for mark in marks):
            found.append(f"{proc.pid}: {line[:120]}")
    return found


def _ports(record: dict[str, Any]) -> list[int]:
    superlink = int(record["superlink"]["address"].rsplit(":", 1)[1])
    return [superlink] + [int(s["runtime_port"]) for s in record["sites"]]


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("deploy")
    out = tmp / "run"
    cmd = _command(
        out,
        "--probe-unregistered",
        "--restart-superlink-after",
        "1",
        "--kill-site",
        "1@2",
        "--timeout",
        "700",
    )
    done = subprocess.run(cmd, env=_env(tmp), capture_output=True, text=True, timeout=850)
    record = json.loads((out / "deployment.json").read_text())
    events = [json.loads(line) for line in (out / "logs" / "events.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"done": done, "out": out, "record": record, "events": events, "rows": rows}


def _events(drilled: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in drilled["events"] if e["event"] == kind]


def test_run_completes_over_tls_with_authentication(drilled: dict[str, Any]) -> None:
    done, out, record = drilled["done"], drilled["out"], drilled["record"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "finished:completed; records in" in done.stdout
    assert record["status"] == "finished:completed"
    assert record["superlink"]["tls"] is True and record["superlink"]["supernode_auth"] is True
    assert [s["name"] for s in record["sites"]] == ["site-1", "site-2"]
    assert all(isinstance(s["node_id"], int) for s in record["sites"])
    assert [r["round"] for r in drilled["rows"]] == [1, 2]
    assert drilled["rows"][0]["status"] == "ok" and drilled["rows"][0]["replies_ok"] == 2
    assert (out / "summary.json").is_file() and (out / "model").is_dir()
    assert json.loads((out / "config.json").read_text())["data"] == "sites"
    superlink_log = (out / "logs" / "superlink.log").read_text()
    assert "--enable-supernode-auth" in superlink_log and "running on https://" in superlink_log
    for site in ("site-1", "site-2"):
        log = (out / "logs" / f"{site}.log").read_text()
        assert "--root-certificates" in log and "--auth-supernode-private-key" in log
        assert f"data-path='{out.parent / 'cache'}" in log.splitlines()[0]


def test_unregistered_supernode_is_refused(drilled: dict[str, Any]) -> None:
    assert len(_events(drilled, "unregistered-node-refused")) == 1
    log = (drilled["out"] / "logs" / "intruder.log").read_text()
    assert "Failed to activate SuperNode" in log
    assert "SuperNode ID:" not in log  # it never joined


def test_killed_supernode_round_completes_with_the_others(drilled: dict[str, Any]) -> None:
    (killed,) = _events(drilled, "drill-site-killed")
    assert (killed["site"], killed["round"], killed["exit_code"]) == ("site-2", 2, -9)
    last = drilled["rows"][1]
    assert last["status"] == "ok"
    assert (last["replies_ok"], last["replies_rejected"]) == (1, 1)
    assert "Node Unavailable" in last["rejections"][0]


def test_superlink_restart_resumes_from_checkpoint(drilled: dict[str, Any]) -> None:
    (crash,) = _events(drilled, "drill-superlink-killed")
    assert crash["after_round"] == 1
    submitted = _events(drilled, "run-submitted")
    assert [e["resume"] for e in submitted] == [False, True]
    assert drilled["record"]["runs"] == [e["run_id"] for e in submitted]
    assert len(_events(drilled, "superlink-started")) == 2
    second = drilled["out"] / "logs" / f"run-{submitted[1]['run_id']}.log"
    assert "resuming after round 1" in second.read_text()


def test_no_process_or_port_left_behind(drilled: dict[str, Any]) -> None:
    ports = _ports(drilled["record"])
    assert _leftovers(drilled["out"], ports) == []
    assert not any(port_open("127.0.0.1", port) for port in ports)


def _default_sigint() -> None:
    """Give the child the SIGINT disposition of a terminal. A test run started in the
    background (``cmd &`` in a script, ``nohup``) inherits SIGINT ignored, Python keeps an
    ignored SIGINT ignored, and the deployment would then (rightly) not see this Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _command(out, "--timeout", "600"),
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait for the deployment to be up, not for a fixed time
        seen.append(line)
        if line.startswith("[deploy] sites-online"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "fedskip: interrupted" in rest
    record = json.loads((out / "deployment.json").read_text())
    assert record["status"] == "interrupted"
    ports = _ports(record)
    assert _leftovers(out, ports) == []
    assert not any(port_open("127.0.0.1", port) for port in ports)


def test_a_deployment_reports_the_sites_evaluation_as_a_simulation_does(tmp_path: Path) -> None:
    """The coordinator holds no test data: the headline is the sites' federated evaluation
    (``final_metric_source: sites``), rows and console name the sites as simulation does."""
    out = tmp_path / "run"
    cmd = [arg for arg in _command(out, "--timeout", "600") if arg != "eval_clients=false"]
    cmd[cmd.index("--rounds") + 1] = "1"
    done = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["final_metric_source"] == "sites"
    assert summary["final_metric"] == summary["best_metric"] == row["client_eval"]["f1"]
    assert list(row["site_eval"]) == ["site-1", "site-2"]  # not client-0 / client-1
    assert summary["site_metrics"] == row["site_eval"]
    assert f"f1 {summary['final_metric']:.4f} (sites)" in done.stdout  # the round's line
    site_1 = row["site_eval"]["site-1"]["f1"]
    assert f"per site f1: site-1 {site_1:.4f}" in done.stdout
    assert (
        f"final F1 {summary['final_metric']:.4f} (the sites' federated evaluation)" in done.stdout
    )
