"""The Flower app as ``flwr run .`` sees it: components and every config key in pyproject."""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import fields
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedskip.config import Config, to_key

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _app_table() -> dict:
    return tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["flwr"]["app"]


def test_components_resolve_to_a_server_app_and_a_client_app() -> None:
    components = _app_table()["components"]
    for key, kind in (("serverapp", ServerApp), ("clientapp", ClientApp)):
        module, attr = components[key].split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), kind)


def test_every_config_key_is_a_flower_run_config_key_with_its_default() -> None:
    table = _app_table()["config"]
    defaults = {to_key(f.name): getattr(Config(), f.name) for f in fields(Config)}
    missing = sorted(set(defaults) - set(table))
    assert not missing, f"add to [tool.flwr.app.config] in pyproject.toml: {missing}"
    assert sorted(set(table) - set(defaults)) == []
    differing = {k: (table[k], v) for k, v in defaults.items() if table[k] != v}
    assert differing == {"out": ("runs/flwr", "runs/latest")}
    assert Config.from_mapping(table).to_run_config() == {**defaults, "out": "runs/flwr"}
