"""``fedskip deploy``: each bad argument is one line on stderr and exit 2 (before any process
starts); ``fedskip deploy certs`` writes a pilot PKI for the given hosts and sites."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import validate_config

from fedskip.cli import main
from fedskip.commands.deploy import parse_site_at_round
from fedskip.config import Config
from fedskip.deploy.certs import certificate_hosts
from fedskip.errors import ConfigError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sites", "0"], "--sites 0: at least 1"),
        (["--client-threads", "0"], "--client-threads 0: at least 1"),
        (["--kill-site", "1"], "--kill-site '1': expected SITE@ROUND"),
        (["--kill-site", "2@1"], "--kill-site '2@1': site must be 0..1"),
        (["--kill-site", "0@4"], "--kill-site '0@4': round must be 1..3"),
        (["--restart-superlink-after", "3"], "--restart-superlink-after 3: must be 1..2"),
        (
            ["--restart-superlink-after", "1", "--superlink-state", "memory"],
            "--restart-superlink-after needs --superlink-state disk",
        ),
        (["--insecure", "--probe-unregistered"], "--probe-unregistered needs authentication"),
        (["--no-auth", "--probe-unregistered"], "--probe-unregistered needs authentication"),
        (["--control-api-address", "everywhere"], "--control-api-address 'everywhere': expected"),
        (["--set", "layerz=2"], "unknown config key 'layerz'"),
        (["--set", "data=sites"], "data=sites means the data is already at the sites"),
        (["--set", "data=/nonexistent/corpus"], "/nonexistent/corpus: deploy local needs"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["deploy", "local", "--rounds", "3", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()  # nothing started, nothing written


def test_parse_site_at_round() -> None:
    assert parse_site_at_round(" 1@2 ", sites=2, rounds=2) == (1, 2)
    with pytest.raises(ConfigError, match="expected SITE@ROUND"):
        parse_site_at_round("a@b", sites=2, rounds=2)


def test_certs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pki"
    code = main(
        [
            "deploy",
            "certs",
            "--out",
            str(out),
            "--host",
            "fl.example.org",
            "--host",
            "10.0.0.5",
            "--site",
            "st-mary",
            "--site",
            "general",
        ]
    )
    assert code == 0
    assert certificate_hosts(out / "server.pem") == ["fl.example.org", "10.0.0.5"]
    assert sorted(p.name for p in (out / "nodes").iterdir()) == [
        "general",
        "general.pub",
        "st-mary",
        "st-mary.pub",
    ]
    printed = capsys.readouterr().out
    assert "site st-mary: private key" in printed and "(stays at the site)" in printed


def test_certs_default_hosts_and_bad_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "certs", "--out", str(tmp_path / "a")]) == 0
    assert certificate_hosts(tmp_path / "a" / "server.pem") == ["localhost", "127.0.0.1", "::1"]
    assert main(["deploy", "certs", "--out", str(tmp_path / "b"), "--days", "0"]) == 2
    assert "--days 0: at least 1" in capsys.readouterr().err


def test_app_command_writes_a_submittable_app(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    code = main(
        [
            "deploy",
            "app",
            "--out",
            str(folder),
            "--sites",
            "3",
            "--run-dir",
            "/srv/run1",
            "--set",
            "labels=problem,test,treatment",
            "rounds=7",
        ]
    )
    assert code == 0
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    valid, errors, _ = validate_config(project, check_module=True, project_dir=folder)
    assert valid, errors
    run_config = tomllib.loads((folder / "run-config.toml").read_text())
    expected = Config(
        data="sites",
        labels="problem,test,treatment",
        rounds=7,
        clients=3,
        partition="natural",
        out="/srv/run1",
    )
    assert run_config == expected.to_run_config()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sites", "0", "--run-dir", "/r"], "--sites 0: at least 1"),
        (["--sites", "2", "--run-dir", "rel/dir", "--set", "labels=a"], "use an absolute path"),
        (["--sites", "2", "--run-dir", "/r"], "'labels' is required with data=sites"),
    ],
)
def test_app_command_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "app", "--out", str(tmp_path / "app"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "app").exists()


def test_deploy_local_leaves_the_report_and_names_the_next_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deployment itself replaced by the records its ServerApp writes: the command renders
    report.md and the plots in the run directory and closes with the next commands."""
    import fedskip.deploy.local
    import fedskip.deploy.sites
    from tests.bench.rundirs import federated_run

    out = tmp_path / "run"

    def deploy(cfg: Config, sites: object, folder: Path, options: object, **_: object) -> dict:
        federated_run(
            folder,
            method="layerskip",
            scores=[0.25, 0.5],
            bytes_per_round=1000,
            summary_extra={"out": str(folder)},
        )
        return {"run-id": 7, "status": "finished:completed"}

    monkeypatch.setattr(fedskip.deploy.sites, "site_folders", lambda cfg, n: [tmp_path] * n)
    monkeypatch.setattr(fedskip.deploy.sites, "label_schema", lambda cfg, folders: "problem")
    monkeypatch.setattr(fedskip.deploy.sites, "local_sites", lambda cfg, f, **kw: list(f))
    monkeypatch.setattr(fedskip.deploy.local, "deploy_local", deploy)
    assert main(["deploy", "local", "--out", str(out), "--rounds", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "final F1 0.5000 (best 0.5000 in round 2)",  # the closing lines of a simulation
        "bytes exchanged: 4.00 kB (down 2.00 kB, up 2.00 kB) in 2 rounds",
        "reduction vs full-model FedAvg: 87.5% (FedAvg would move 32.00 kB)",
        f"wall time 4.0 s; run directory: {out}",
        f"fedskip deploy: run 7 finished:completed; records in {out}",
        "next:",
        f"  report: {out / 'report.md'} (plots in {out}/plots; compare with other runs: "
        f"fedskip report {out} OTHER_RUN...)",
    ]
    assert "| `run` | layerskip | ner | 2 | natural | 0.500 | 0.500 |" in (
        (out / "report.md").read_text()
    )
    assert (out / "plots" / "ner-metric-vs-round.png").is_file()
