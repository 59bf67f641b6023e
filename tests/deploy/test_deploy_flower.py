"""Command lines, node config syntax, the app bundle and run config Flower accepts, the flwr CLI
wrapper; plus the monitor helpers (log tail, rounds, checkpoints, training in progress)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args, validate_config

from fedskip.config import Config
from fedskip.deploy.flower import (
    APP_COMPONENTS,
    FlowerCli,
    TlsFiles,
    _last_json,
    format_node_config,
    superlink_command,
    supernode_command,
    write_app,
    write_run_config,
)
from fedskip.deploy.monitor import (
    LogTail,
    TrainTasks,
    checkpoint_round,
    completed_rounds,
    flower_log_line,
    round_rows,
)
from fedskip.deploy.processes import DeploymentError, free_ports

TLS = TlsFiles(Path("/p/ca.pem"), Path("/p/server.pem"), Path("/p/server.key"))


def test_superlink_command_with_tls_auth_and_database() -> None:
    assert superlink_command("127.0.0.1", 9000, tls=TLS, auth=True, database=Path("/d/s.db")) == [
        "flower-superlink",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--control-api-address",
        "127.0.0.1:9093",
        "--ssl-ca-certfile",
        "/p/ca.pem",
        "--ssl-certfile",
        "/p/server.pem",
        "--ssl-keyfile",
        "/p/server.key",
        "--enable-supernode-auth",
        "--database",
        "/d/s.db",
        "--disable-runtime-dependency-installation",
    ]


def test_the_control_api_is_bound_to_loopback_unless_told_otherwise() -> None:
    """A SuperLink whose Fleet API faces the sites (host 0.0.0.0) still puts its gRPC Control
    API on 127.0.0.1 (Flower's own default is 0.0.0.0:9093), as Flower 1.42 parses it."""
    from flwr.superlink.cli.flower_superlink import (  # Flower's own argument parser
        _format_address,
        _parse_args_run_superlink,
    )

    default = superlink_command("0.0.0.0", 8000, tls=TLS, auth=True, database=None)
    told = superlink_command(
        "0.0.0.0", 8000, tls=TLS, auth=True, database=None, control_api_address="10.0.0.5:9093"
    )
    parser = _parse_args_run_superlink()
    parsed = [parser.parse_args(argv[1:]) for argv in (default, told)]
    assert [_format_address(p.control_api_address)[1] for p in parsed] == ["127.0.0.1", "10.0.0.5"]
    assert parser.parse_args([]).control_api_address.startswith("0.0.0.0:")  # Flower's default
    assert (parsed[0].host, parsed[0].port) == ("0.0.0.0", 8000)


def test_deploy_local_passes_a_loopback_control_api_address(tmp_path: Path) -> None:
    from fedskip.deploy.local import LocalDeployment, Options, Site

    deployment = LocalDeployment(
        Config(),
        [Site("site-0", {})],
        tmp_path,
        Options(tls=False, auth=False, echo=lambda line: None),
        version="0",
    )
    deployment.prepare()
    host, port = deployment.control_api_address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) not in (
        deployment.superlink_port,
        deployment.probe_port,
        *deployment.site_ports,
    )


def test_superlink_command_insecure() -> None:
    assert superlink_command("0.0.0.0", 1, tls=None, auth=False, database=None) == [
        "flower-superlink",
        "--host",
        "0.0.0.0",
        "--port",
        "1",
        "--control-api-address",
        "127.0.0.1:9093",
        "--insecure",
        "--disable-runtime-dependency-installation",
    ]


def test_auth_without_tls_is_refused() -> None:
    with pytest.raises(DeploymentError, match="needs TLS"):
        superlink_command("127.0.0.1", 1, tls=None, auth=True, database=None)


def test_supernode_command() -> None:
    argv = supernode_command(
        "127.0.0.1:9000",
        9101,
        ca_cert=Path("/p/ca.pem"),
        private_key=Path("/k/site-1"),
        node_config={"data-path": "/data/site 1", "client-id": 0},
    )
    assert argv == [
        "flower-supernode",
        "--superlink",
        "127.0.0.1:9000",
        "--host",
        "127.0.0.1",
        "--port",
        "9101",
        "--root-certificates",
        "/p/ca.pem",
        "--auth-supernode-private-key",
        "/k/site-1",
        "--node-config",
        "data-path='/data/site 1' client-id=0",
    ]
    insecure = supernode_command("h:1", 2, ca_cert=None, private_key=None, node_config={})
    assert insecure == [
        "flower-supernode",
        "--superlink",
        "h:1",
        "--host",
        "127.0.0.1",
        "--port",
        "2",
        "--insecure",
    ]


def test_node_config_round_trips_through_flowers_parser() -> None:
    values = {
        "data-path": "/data/St. Mary's/notes",
        "plain": "/x/y",
        "client-id": 3,
        "ratio": 0.25,
        "flag": True,
        "label": "icd9",
    }
    text = format_node_config(values)
    assert text == (
        "data-path=\"/data/St. Mary's/notes\" plain='/x/y' client-id=3 ratio=0.25 flag=true "
        "label='icd9'"
    )
    assert parse_config_args([text]) == values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bad key": "x"}, "node-config key 'bad key'"),
        ({"p": 'it\'s "quoted"'}, "cannot hold both"),
        ({"p": "two\nlines"}, "cannot hold both"),
    ],
)
def test_node_config_errors(values: dict, message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        format_node_config(values)


def test_app_bundle_is_a_valid_flower_app(tmp_path: Path) -> None:
    path = write_app(tmp_path / "app", version="1.2.3")
    conf = tomllib.loads(path.read_text())
    valid, errors, _ = validate_config(conf, check_module=True, project_dir=tmp_path / "app")
    assert valid, errors
    assert conf["project"]["version"] == "1.2.3"
    assert conf["tool"]["flwr"]["app"]["components"] == APP_COMPONENTS
    assert conf["tool"]["flwr"]["app"]["config"] == Config().to_run_config()
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == ["pyproject.toml"]


def test_run_config_file_holds_the_resolved_config_and_changes(tmp_path: Path) -> None:
    cfg = Config(rounds=3, layers=1)
    path = write_run_config(tmp_path / "rc.toml", cfg, resume=True, data="sites", out="/abs")
    values = tomllib.loads(path.read_text())
    assert values == {**cfg.to_run_config(), "resume": True, "data": "sites", "out": "/abs"}
    assert parse_config_args([str(path)]) == values  # what `flwr run --run-config F` reads


def test_last_json_skips_banners() -> None:
    assert _last_json('Using SuperLink\n{"success": true, "run-id": "7"}\n') == {
        "success": True,
        "run-id": "7",
    }
    assert _last_json("no json {here\n") is None
    assert _last_json("[1, 2]") is None


def test_flower_home_connection(tmp_path: Path) -> None:
    FlowerCli(tmp_path / "tls", "127.0.0.1:9", ca_cert=Path("/p/ca.pem"))
    FlowerCli(tmp_path / "plain", "127.0.0.1:9", ca_cert=None)
    tls = tomllib.loads((tmp_path / "tls" / "config.toml").read_text())
    plain = tomllib.loads((tmp_path / "plain" / "config.toml").read_text())
    assert tls == {
        "superlink": {
            "default": "fedskip",
            "fedskip": {"address": "127.0.0.1:9", "root-certificates": "/p/ca.pem"},
        }
    }
    assert plain["superlink"]["fedskip"] == {"address": "127.0.0.1:9", "insecure": True}
    assert FlowerCli(tmp_path / "x", "a:1", ca_cert=None).env["FLWR_HOME"] == str(tmp_path / "x")


def test_flwr_failure_becomes_a_deployment_error(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    cli = FlowerCli(tmp_path / "home", f"127.0.0.1:{port}", ca_cert=None, timeout=60)
    with pytest.raises(DeploymentError, match=r"listing SuperNodes failed .*unavailable"):
        cli.nodes()


# ---------------------------------------------------------------------------- monitor
def test_log_tail_returns_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    tail = LogTail(path)
    assert tail.read_lines() == []
    path.write_bytes(b"one\ntw")
    assert tail.read_lines() == ["one"]
    with path.open("ab") as fh:
        fh.write(b"o\r\nthree\n")
    assert tail.read_lines() == ["two", "three"]
    assert tail.read_lines() == []


def test_flower_log_line_drops_colour_and_level() -> None:
    assert flower_log_line("\x1b[92mINFO \x1b[0m:      round 1/2 loss 0.5") == "round 1/2 loss 0.5"
    assert flower_log_line("\x1b[91mERROR \x1b[0m:     Exit Code: 305") == "Exit Code: 305"
    assert flower_log_line("plain text  ") == "plain text"


def test_rounds_and_checkpoint(tmp_path: Path) -> None:
    assert completed_rounds(tmp_path) == 0 and checkpoint_round(tmp_path) == 0
    rows = [{"round": 1, "status": "ok"}, {"round": 2, "status": "failed"}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"round": 3, "sta'  # being written
    (tmp_path / "metrics.jsonl").write_text(text)
    assert round_rows(tmp_path) == rows
    assert completed_rounds(tmp_path) == 2
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text('{"round": 1, "config": {}}')
    assert checkpoint_round(tmp_path) == 1


def test_train_tasks_in_progress(tmp_path: Path) -> None:
    log = tmp_path / "site.log"
    tasks = TrainTasks(log, run_id=7)
    assert not tasks.in_progress()

    def add(*lines: str) -> None:
        with log.open("a") as fh:
            fh.write("".join(f"INFO :      {line}\n" for line in lines))

    add("[RUN 7]", "Receiving: query.identify message (ID: 1)")
    assert not tasks.in_progress()
    add("[RUN 7]", "Receiving: train message (ID: 2)")
    assert tasks.in_progress()
    add("[RUN 7]", "Sending: train message (ID: 3)")
    assert not tasks.in_progress()
    add("[RUN 5]", "Receiving: train message (ID: 4)")  # another run's task
    assert not tasks.in_progress()
    assert (tasks.received, tasks.sent) == (1, 1)
    assert TrainTasks(log, run_id=5).in_progress()
