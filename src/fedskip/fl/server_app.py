"""The fedskip ServerApp: rebuild the config from the run config and run the federation.

``app`` is the ServerApp named in ``pyproject.toml`` (``flwr run .``); :func:`build_server_app`
builds the same app with a resolved run config for ``fedskip run``. The work is in
:func:`fedskip.fl.server.run_server`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedskip.config import Config, Scalar
from fedskip.fl import stop
from fedskip.fl.server import run_server
from fedskip.privacy.checks import check_privacy_config


def build_server_app(run_config: Mapping[str, Scalar] | None = None) -> ServerApp:
    """The fedskip ServerApp; ``run_config`` (if given) overrides the Context's run config."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        values = {**context.run_config, **(run_config or {})}
        cfg = Config.from_mapping(values)  # refuses impossible combinations (ConfigError)
        check_privacy_config(cfg)  # [privacy] warn loudly where a setting weakens a guarantee
        with stop.SERVING:
            run_server(grid, cfg)

    return server_app


app = build_server_app()
