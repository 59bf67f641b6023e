"""Flower's Deployment Engine from Python: command lines, the ``flwr`` CLI, the app bundle.

Everything goes through Flower's public command-line tools (``flower-superlink``,
``flower-supernode``, ``flwr``) so that what ``fedskip deploy local`` does on loopback is what
a hospital IT team does by hand on real hosts (see ``docs/deployment.md``).

The ``flwr`` CLI reads its SuperLink connections from ``config.toml`` in the Flower home folder
(``$FLWR_HOME``, default ``~/.flwr``); :class:`FlowerCli` keeps its own home folder so a local
deployment never touches the user's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fedskip.config import Config, Scalar
from fedskip.deploy.processes import DeploymentError, run_captured

CONNECTION = "fedskip"
"""Name of the SuperLink connection written to the Flower home folder."""

APP_COMPONENTS = {
    "serverapp": "fedskip.fl.server_app:app",
    "clientapp": "fedskip.fl.client_app:app",
}


@dataclass(frozen=True)
class TlsFiles:
    """The SuperLink's TLS material: CA certificate (what clients trust), certificate, key."""

    ca_cert: Path
    cert: Path
    key: Path


CONTROL_API_LOOPBACK = "127.0.0.1:9093"
"""Where fedskip puts the SuperLink's gRPC Control API unless told otherwise: loopback only.

Flower 1.42 serves the Control API (register site keys, submit and stop runs: the open-source
version authenticates no one) over HTTPS on ``--host``/``--port`` beside the Fleet API, and
starts a gRPC Control API too when ``FLWR_INTERNAL_GRPC_CONTROL_API=1``, on
``--control-api-address`` (deprecated but parsed; Flower's default ``0.0.0.0:9093`` is every
interface). fedskip always passes a loopback address there, so that server is never reachable
from another host; the HTTPS one is kept off the sites' network as docs/deployment.md §2 says."""


def superlink_command(
    host: str,
    port: int,
    *,
    tls: TlsFiles | None,
    auth: bool,
    database: Path | None,
    control_api_address: str = CONTROL_API_LOOPBACK,
) -> list[str]:
    """``flower-superlink`` serving Fleet, Control and Runtime APIs on ``host:port`` (HTTPS),
    with its gRPC Control API (when Flower starts one) on ``control_api_address``
    (:data:`CONTROL_API_LOOPBACK` unless told otherwise).

    ``auth`` turns on SuperNode authentication (only registered public keys may connect; Flower
    requires TLS for it). ``database`` keeps registrations and runs across restarts.
    """
    if auth and tls is None:
        raise DeploymentError("SuperNode authentication needs TLS: drop --insecure or auth")
    argv = ["flower-superlink", "--host", host, "--port", str(port)]
    argv += ["--control-api-address", control_api_address]
    if tls is None:
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.cert),
            "--ssl-keyfile",
            str(tls.key),
        ]
    if auth:
        argv.append("--enable-supernode-auth")
    if database is not None:
        argv += ["--database", str(database)]
    # the app's code is the fedskip installed on each host; nothing is installed at run time
    argv.append("--disable-runtime-dependency-installation")
    return argv


def supernode_command(
    superlink: str,
    port: int,
    *,
    ca_cert: Path | None,
    private_key: Path | None,
    node_config: Mapping[str, Scalar],
    host: str = "127.0.0.1",
) -> list[str]:
    """``flower-supernode`` for one site: connects to ``superlink`` (``HOST:PORT``) and serves
    its local runtime API (ClientApp processes) on ``host:port`` (distinct per SuperNode)."""
    argv = ["flower-supernode", "--superlink", superlink, "--host", host, "--port", str(port)]
    argv += ["--insecure"] if ca_cert is None else ["--root-certificates", str(ca_cert)]
    if private_key is not None:
        argv += ["--auth-supernode-private-key", str(private_key)]
    if node_config:
        argv += ["--node-config", format_node_config(node_config)]
    return argv


_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def format_node_config(values: Mapping[str, Scalar]) -> str:
    """``{"data-path": "/d/site 1", "x": 2}`` → ``data-path='/d/site 1' x=2`` (Flower's syntax:
    space-separated ``key=value`` with TOML values; strings become TOML literal strings)."""
    parts = []
    for key, value in values.items():
        if not _KEY.match(key):
            raise DeploymentError(f"node-config key {key!r}: use letters, digits, '-', '_', '.'")
        parts.append(f"{key}={_toml_value(key, value)}")
    return " ".join(parts)


def _toml_value(key: str, value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    if '"' not in text and "\\" not in text and "\n" not in text:
        return f'"{text}"'
    raise DeploymentError(f"node-config {key}: {text!r} cannot hold both ' and \" (or newlines)")


def write_app(app_dir: Path, *, version: str) -> Path:
    """A minimal Flower app project: ``pyproject.toml`` naming fedskip's ServerApp/ClientApp.

    The bundle (FAB) that ``flwr run`` ships to the SuperLink and SuperNodes then holds only this
    file; the code that runs is the fedskip package installed on each host, so no code travels
    over the network and every site runs the version its IT team installed. The app's config
    section lists every fedskip key with its default (Flower accepts overrides only for keys
    declared here).
    """
    app_dir.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {
            "name": "fedskip",
            "version": version,
            "description": "Layer-Skipping Federated Learning for clinical NLP",
            "license": "Apache-2.0",
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedskip",
                    "components": dict(APP_COMPONENTS),
                    "config": Config().to_run_config(),
                }
            }
        },
    }
    path = app_dir / "pyproject.toml"
    path.write_text(tomli_w.dumps(project), encoding="utf-8")
    return path


def write_run_config(path: Path, cfg: Config, **changes: Scalar) -> Path:
    """The resolved config as a TOML file for ``flwr run --run-config`` (plus ``changes``)."""
    values: dict[str, Any] = {**cfg.to_run_config(), **changes}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(values), encoding="utf-8")
    return path


class FlowerCli:
    """Runs ``flwr`` commands against one SuperLink connection kept in a private Flower home."""

    def __init__(
        self, home: Path, address: str, *, ca_cert: Path | None, timeout: float = 120.0
    ) -> None:
        self.home = home
        self.address = address
        self.timeout = timeout
        connection: dict[str, Any] = {"address": address}
        if ca_cert is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(ca_cert)
        home.mkdir(parents=True, exist_ok=True)
        config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
        (home / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        """The environment for every Flower process of this deployment (private home)."""
        return {**os.environ, "FLWR_HOME": str(self.home)}

    def command(self, *args: str) -> list[str]:
        """``flwr <args>`` with the connection name inserted where the CLI expects it."""
        return ["flwr", *args]

    def _json(self, args: Sequence[str], what: str) -> dict[str, Any]:
        argv = self.command(*args, "--format", "json")
        try:
            done = run_captured(argv, env=self.env, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise DeploymentError(
                f"{what}: `{' '.join(argv)}` took over {self.timeout:.0f} s"
            ) from None
        payload = _last_json(done.stdout)
        if payload is None or not payload.get("success", False):
            detail = (payload or {}).get("error-message") or (done.stderr or done.stdout).strip()
            detail = " ".join(str(detail).split())
            raise DeploymentError(f"{what} failed (exit {done.returncode}): {detail}")
        return payload

    def register(self, public_key: Path, name: str) -> int:
        """Register a site's SuperNode public key; returns the node id the SuperLink assigned."""
        payload = self._json(
            ["supernode", "register", str(public_key), CONNECTION, "--name", name],
            f"registering {name}",
        )
        return int(payload["node-id"])

    def nodes(self) -> list[dict[str, Any]]:
        """The SuperLink's nodes (``node-id``, ``status`` such as ``online``/``registered``)."""
        payload = self._json(["supernode", "list", CONNECTION], "listing SuperNodes")
        return list(payload.get("nodes", []))

    def submit(self, app_dir: Path, run_config: Path) -> int:
        """Start the app with the run config; returns the run id."""
        payload = self._json(
            ["run", str(app_dir), CONNECTION, "--run-config", str(run_config)], "starting the run"
        )
        return int(payload["run-id"])

    def run_info(self, run_id: int) -> dict[str, Any]:
        """Flower's record of one run (``status`` e.g. ``running``, ``finished:completed``)."""
        payload = self._json(["list", CONNECTION, "--run-id", str(run_id)], f"run {run_id}")
        runs = payload.get("runs", [])
        if not runs:
            raise DeploymentError(f"run {run_id}: unknown to the SuperLink at {self.address}")
        return dict(runs[0])

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run (used for a run orphaned by a SuperLink restart)."""
        self._json(["stop", str(run_id), CONNECTION], f"stopping run {run_id}")

    def log_command(self, run_id: int) -> list[str]:
        """``flwr log`` streaming the run's ServerApp output until the run ends."""
        return self.command("log", str(run_id), CONNECTION, "--stream")


def _last_json(text: str) -> dict[str, Any] | None:
    """The JSON object the ``flwr`` CLI prints last with ``--format json`` (after any banner)."""
    start = text.find("{")
    while start != -1:
        try:
            value = json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None
