"""``fedskip --version`` and ``fedskip config``: the keys listed are a config file that reads back
as the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fedskip
from fedskip.cli import main
from fedskip.config import Config, known_keys, load_config


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"fedskip {fedskip.__version__}\n"


def test_config_listing_is_a_toml_file_of_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert [line.split(" = ")[0] for line in settings if line] == known_keys()
    assert "# reader for `data` [one of auto, i2b2, brat, mimic, conll, jsonl, hf]" in text
    assert "# federated rounds [>= 1]\nrounds = 4\n" in text
    assert "[0.0 to 0.5]\nlabel-noise = 0.02\n" in text
    path = tmp_path / "defaults.toml"
    path.write_text(text, "utf-8")
    assert load_config(path) == Config()


def test_config_json_for_chosen_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "dp", "batch-size", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "key": "batch-size",
            "default": 32,
            "type": "int",
            "choices": None,
            "min": 1,
            "max": None,
            "help": "examples per step",
        },
        {
            "key": "dp",
            "default": "none",
            "type": "str",
            "choices": ["none", "sample", "client"],
            "min": None,
            "max": None,
            "help": "differential privacy: sample-level (DP-SGD) or client-level",
        },
    ]


def test_config_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "lyers"]) == 2
    assert capsys.readouterr().err == (
        "fedskip: error: unknown config key 'lyers'; did you mean layers, layer-ids?\n"
    )


def test_run_help_points_to_the_key_listing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "fedskip config` lists every key" in " ".join(capsys.readouterr().out.split())
