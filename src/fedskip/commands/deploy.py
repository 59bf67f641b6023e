"""``fedskip deploy``: Flower's Deployment Engine.

``fedskip deploy local`` starts a real deployment on this machine — a SuperLink and one
SuperNode per site as separate processes on loopback, TLS and SuperNode authentication on —
runs the federation with ``flwr run`` and stops every process at the end (also on Ctrl-C).
``fedskip deploy certs`` writes a test CA, a SuperLink certificate and site keys for a pilot.
See ``docs/deployment.md`` for a deployment across hospitals.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from fedskip.commands.common import (
    add_config_args,
    config_from_args,
    leave_report,
    next_commands,
)
from fedskip.config import Config
from fedskip.errors import ConfigError

_SITE_AT_ROUND = re.compile(r"^(\d+)@(\d+)$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="run on Flower's Deployment Engine (SuperLink + SuperNodes)",
        description="Run fedskip on Flower's Deployment Engine. See docs/deployment.md.",
    )
    actions = parser.add_subparsers(dest="deploy_command", metavar="ACTION")
    actions.required = True
    _register_local(actions)
    _register_app(actions)
    _register_certs(actions)


def _register_local(actions: Any) -> None:
    local = actions.add_parser(
        "local",
        help="a real SuperLink + N SuperNodes on loopback (TLS, authentication), one run",
        description=(
            "Start a SuperLink and one SuperNode per site as separate processes on 127.0.0.1 "
            "(free ports), each site on its own data folder (data=synth: the synthetic corpus; "
            "data=DIR: DIR's site subfolders), run the federation with `flwr run` and stop "
            "every process. Writes the run directory of `fedskip run` (report.md and plots/ "
            "included) plus deployment.json and logs/ (one log per process)."
        ),
    )
    local.add_argument("--sites", type=int, default=2, help="SuperNodes / sites (default 2)")
    local.add_argument("--rounds", type=int, help="federated rounds (config key rounds)")
    local.add_argument("--out", metavar="DIR", help="run directory (config key out)")
    tls = local.add_mutually_exclusive_group()
    tls.add_argument(
        "--tls",
        dest="tls",
        action="store_true",
        default=True,
        help="TLS on every connection (default)",
    )
    tls.add_argument(
        "--insecure",
        dest="tls",
        action="store_false",
        help="no TLS (implies --no-auth); for debugging only",
    )
    local.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        default=True,
        help="let any SuperNode join (default: only registered site keys)",
    )
    local.add_argument(
        "--model-path",
        metavar="DIR",
        help="each SuperNode loads the base model from DIR (node config model-path)",
    )
    local.add_argument(
        "--kill-site",
        metavar="SITE@ROUND",
        help="drill: kill site SITE's SuperNode (0-based) while it works on ROUND",
    )
    local.add_argument(
        "--restart-superlink-after",
        type=int,
        metavar="ROUND",
        help="drill: crash the SuperLink after ROUND, restart it, resume the run",
    )
    local.add_argument(
        "--probe-unregistered",
        action="store_true",
        help="drill: check that a SuperNode with an unregistered key is refused",
    )
    local.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a process gets after SIGTERM before SIGKILL (default 10)",
    )
    local.add_argument(
        "--control-api-address",
        metavar="HOST:PORT",
        default="",
        help="the SuperLink's gRPC Control API (flower-superlink --control-api-address; default: "
        "a free port on 127.0.0.1, never another interface unless given here)",
    )
    local.add_argument(
        "--measure-wire",
        action="store_true",
        help="route each site through a byte-counting relay; its bytes on the wire (TCP, TLS "
        "framing, content) go to deployment.json",
    )
    local.add_argument(
        "--superlink-state",
        choices=("disk", "memory"),
        default="disk",
        help="where the SuperLink keeps runs and messages in flight: disk (SQLite, survives a "
        "restart; default) or memory (for messages of a GB or more, e.g. LLaMA 3.2-1B at k >= "
        "4, which Flower 1.42's SQLite store fails with 'database is locked')",
    )
    local.add_argument("--timeout", type=float, metavar="S", help="give up on the run after S s")
    local.add_argument(
        "--client-threads",
        type=int,
        default=1,
        metavar="T",
        help="torch threads per ClientApp process (default 1)",
    )
    add_config_args(local)
    local.set_defaults(func=run_local)


def _register_app(actions: Any) -> None:
    app = actions.add_parser(
        "app",
        help="write the Flower app and run config a coordinator submits with `flwr run`",
        description=(
            "Write DIR/pyproject.toml (the Flower app: fedskip's ServerApp and ClientApp, no "
            "code) and DIR/run-config.toml (the resolved config with data=sites, the label "
            "schema and one client per site). Submit with: flwr run DIR CONNECTION "
            "--run-config DIR/run-config.toml --stream"
        ),
    )
    app.add_argument("--out", required=True, metavar="DIR", help="app folder to write")
    app.add_argument("--sites", type=int, required=True, help="number of hospital sites")
    app.add_argument(
        "--run-dir",
        required=True,
        metavar="DIR",
        help="run directory on the coordinator host (where the ServerApp writes)",
    )
    add_config_args(app)
    app.set_defaults(func=run_app)


def _register_certs(actions: Any) -> None:
    certs = actions.add_parser(
        "certs",
        help="test CA, SuperLink certificate and SuperNode keys for a pilot",
        description=(
            "Write ca.pem/ca.key, server.pem/server.key (valid for every --host) and "
            "nodes/<site> + nodes/<site>.pub key pairs. For pilots only: production uses "
            "certificates from the hospital's PKI; site private keys are made at the sites."
        ),
    )
    certs.add_argument("--out", required=True, metavar="DIR", help="output folder")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name or IP address of the SuperLink (repeatable; "
        "default localhost and 127.0.0.1)",
    )
    certs.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="NAME",
        help="site name to create a SuperNode key pair for (repeatable)",
    )
    certs.add_argument("--days", type=int, default=30, help="validity (default 30 days)")
    certs.set_defaults(func=run_certs)


def parse_site_at_round(text: str, sites: int, rounds: int) -> tuple[int, int]:
    """``"1@2"`` → (1, 2), checked against the number of sites and rounds."""
    match = _SITE_AT_ROUND.match(text.strip())
    if not match:
        raise ConfigError(f"--kill-site {text!r}: expected SITE@ROUND, e.g. 1@2")
    site, round_ = int(match.group(1)), int(match.group(2))
    if not 0 <= site < sites:
        raise ConfigError(f"--kill-site {text!r}: site must be 0..{sites - 1}")
    if not 1 <= round_ <= rounds:
        raise ConfigError(f"--kill-site {text!r}: round must be 1..{rounds}")
    return site, round_


def _options(args: argparse.Namespace, rounds: int, quiet: bool) -> Any:
    from fedskip.deploy.local import Drills, Options

    if args.sites < 1:
        raise ConfigError(f"--sites {args.sites}: at least 1")
    if args.client_threads < 1:
        raise ConfigError(f"--client-threads {args.client_threads}: at least 1")
    drills = Drills(probe_unregistered=args.probe_unregistered)
    if args.kill_site:
        drills.kill_site = parse_site_at_round(args.kill_site, args.sites, rounds)
    after = args.restart_superlink_after
    if after is not None:
        if not 1 <= after < rounds:
            raise ConfigError(f"--restart-superlink-after {after}: must be 1..{rounds - 1}")
        drills.restart_superlink_after = after
        if args.superlink_state == "memory":
            raise ConfigError(
                "--restart-superlink-after needs --superlink-state disk: an in-memory SuperLink "
                "forgets its registrations and runs when it restarts"
            )
    if args.control_api_address:
        from flwr.supercore.address import parse_address

        if not parse_address(args.control_api_address):
            raise ConfigError(
                f"--control-api-address {args.control_api_address!r}: expected HOST:PORT"
            )
    auth = args.auth and args.tls
    if args.probe_unregistered and not auth:
        raise ConfigError("--probe-unregistered needs authentication (drop --insecure/--no-auth)")

    def echo(line: str) -> None:
        if not quiet or line.startswith("[deploy]") or line.startswith("fedskip"):
            print(line, flush=True)

    return Options(
        tls=args.tls,
        auth=auth,
        grace=args.grace,
        run_timeout=args.timeout,
        client_threads=args.client_threads,
        echo=echo,
        drills=drills,
        control_api_address=args.control_api_address,
        measure_wire=args.measure_wire,
        superlink_state=args.superlink_state,
    )


def run_local(args: argparse.Namespace) -> int:
    from fedskip import __version__
    from fedskip.deploy.local import deploy_local
    from fedskip.deploy.sites import (
        coordinator_run_config,
        label_schema,
        local_sites,
        site_folders,
    )

    cfg = config_from_args(args)
    if args.rounds is not None:
        cfg = cfg.replace(rounds=args.rounds)
    out = Path(args.out if args.out else cfg.out).expanduser().resolve()
    cfg = cfg.replace(out=str(out))
    options = _options(args, cfg.rounds, cfg.quiet)
    folders = site_folders(cfg, args.sites)
    labels = label_schema(cfg, folders)
    sites = local_sites(cfg, folders, model_path=args.model_path)
    options.run_config = coordinator_run_config(cfg, sites=len(sites), labels=labels)
    info = deploy_local(cfg, sites, out, options, version=__version__)
    leave_report(out)
    if (out / "summary.json").is_file():  # the same closing lines as a simulation's
        from fedskip.commands.run import format_federated

        print(format_federated(json.loads((out / "summary.json").read_text("utf-8"))))
    print(f"fedskip deploy: run {info.get('run-id')} {info.get('status')}; records in {out}")
    print(next_commands(cfg, out))
    return 0


def run_app(args: argparse.Namespace) -> int:
    from fedskip import __version__
    from fedskip.deploy.flower import write_app, write_run_config
    from fedskip.deploy.sites import coordinator_run_config
    from fedskip.pipeline import schema_labels

    if args.sites < 1:
        raise ConfigError(f"--sites {args.sites}: at least 1")
    cfg = config_from_args(args)
    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_absolute():
        raise ConfigError(
            f"--run-dir {args.run_dir}: use an absolute path (the ServerApp's cwd varies)"
        )
    cfg = Config.from_mapping(
        {**coordinator_run_config(cfg, sites=args.sites, labels=cfg.labels), "out": str(run_dir)},
        base=cfg,
    )
    schema_labels(cfg)  # the coordinator must state the label schema
    folder = Path(args.out)
    write_app(folder, version=__version__)
    config = write_run_config(folder / "run-config.toml", cfg)
    print(
        f"app: {folder / 'pyproject.toml'}\nrun config: {config}\n"
        f"submit: flwr run {folder} <connection> --run-config {config} --stream"
    )
    return 0


def run_certs(args: argparse.Namespace) -> int:
    from fedskip.deploy.certs import (
        LOCAL_HOSTS,
        generate_ca,
        generate_node_keys,
        generate_server_cert,
    )

    if args.days < 1:
        raise ConfigError(f"--days {args.days}: at least 1")
    out = Path(args.out)
    hosts = tuple(args.host) or LOCAL_HOSTS
    ca = generate_ca(out, days=args.days)
    server = generate_server_cert(ca, out, hosts=hosts, days=args.days)
    lines = [
        f"CA certificate (give to every site):  {ca.cert}",
        f"SuperLink certificate / key:         {server.cert} / {server.key}  ({', '.join(hosts)})",
    ]
    for name in args.site:
        keys = generate_node_keys(out / "nodes", name)
        lines.append(
            f"site {name}: private key {keys.private_key} (stays at the site), "
            f"public key {keys.public_key} (register it)"
        )
    print("\n".join(lines), file=sys.stdout)
    return 0
