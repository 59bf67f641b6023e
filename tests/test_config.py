"""The one validated config: precedence, coercion, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedskip.cli import main
from fedskip.config import Config, known_keys, load_config, parse_overrides
from fedskip.errors import ConfigError


def test_defaults_round_trip_through_run_config() -> None:
    cfg = Config()
    run_config = cfg.to_run_config()
    assert all(isinstance(v, (str, int, float, bool)) for v in run_config.values())
    assert "layer-strategy" in run_config and "local-epochs" in run_config
    assert Config.from_mapping(run_config) == cfg


def test_precedence_defaults_file_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('layers = 4\nlr = 1e-4\nmodel = "llama-tiny"\n')
    cfg = load_config(toml, ["layers=3", "rounds=7"], out="runs/x")
    assert (cfg.layers, cfg.lr, cfg.model, cfg.rounds, cfg.out) == (
        3,
        1e-4,
        "llama-tiny",
        7,
        "runs/x",
    )


def test_file_under_fedskip_table_and_flower_app_config(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text("[fedskip]\nrounds = 2\n")
    b = tmp_path / "pyproject.toml"
    b.write_text('[tool.flwr.app.config]\nrounds = 9\ntask = "classification"\n')
    assert load_config(a).rounds == 2
    assert (load_config(b).rounds, load_config(b).task) == (9, "classification")


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["secagg=true"], {"secagg": True}),
        (["secagg=0"], {"secagg": False}),
        (["layers=4.0"], {"layers": 4}),
        (["alpha=0.3"], {"alpha": 0.3}),
        (["layer-strategy=explicit", "layer-ids=0, 5"], {"layer_ids": "0, 5"}),
    ],
)
def test_coercion(pairs: list[str], expected: dict[str, object]) -> None:
    cfg = load_config(None, pairs)
    for attr, value in expected.items():
        assert getattr(cfg, attr) == value
    assert cfg.layer_id_list() in ([], [0, 5])


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["layerz=2"], "unknown config key 'layerz'; did you mean layers"),
        (["task=qa"], "config key 'task': 'qa' is not one of ner, classification"),
        (["layers=0"], "config key 'layers': 0 must be >= 1"),
        (["layers=two"], "config key 'layers': 'two' is not an integer"),
        (["layers=1.5"], "config key 'layers': '1.5' is not an integer"),
        (["lr=fast"], "config key 'lr': 'fast' is not a number"),
        (["secagg=maybe"], "config key 'secagg': 'maybe' is not a boolean"),
        (["fraction-train=1.5"], "config key 'fraction-train': 1.5 must be <= 1.0"),
        (["layer-strategy=explicit"], "config key 'layer-ids' is required"),
        (["layer-ids=1,x"], "config key 'layer-ids': '1,x' must be comma-separated integers"),
        (
            ["secagg=true", "secagg-shares=3", "secagg-threshold=3"],
            "'secagg-threshold': 3 must be >= 2 and < secagg-shares (3)",
        ),
        (["rounds"], "--set expects key=value, got 'rounds'"),
        (["max-length=32", "stride=32"], "config key 'stride': 32 must be smaller than max-length"),
    ],
)
def test_errors_name_the_key_and_allowed_values(pairs: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, pairs)
    assert message in str(info.value)


def test_missing_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("layers = = 2\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_parse_overrides_keeps_equals_in_values() -> None:
    assert parse_overrides(["out=a=b", "model= x "]) == {"out": "a=b", "model": "x"}


def test_pyproject_app_config_uses_only_known_keys() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    app_config = data["tool"]["flwr"]["app"]["config"]
    assert set(app_config) <= set(known_keys())
    Config.from_mapping(app_config)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "int8"),
        ({"secagg": True}, "none"),
        ({"dp": "client", "rounds": 2}, "none"),
        ({"dp": "sample"}, "int8"),
        ({"compression": "fp16"}, "fp16"),
        ({"compression": "int8"}, "int8"),
        ({"compression": "none"}, "none"),
    ],
)
def test_compression_auto_resolves_to_what_the_run_allows(
    changes: dict[str, object], expected: str
) -> None:
    from fedskip.config import Config

    cfg = Config.from_mapping(changes)
    assert cfg.wire_compression == expected
    assert cfg.to_run_config()["compression"] == changes.get("compression", "auto")


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("lr=nan", "config key 'lr': nan is not a finite number"),
        ("lr=inf", "config key 'lr': inf is not a finite number"),
        ("noise-multiplier=nan", "config key 'noise-multiplier': nan is not a finite number"),
        ("noise-multiplier=inf", "config key 'noise-multiplier': inf is not a finite number"),
        ("target-epsilon=nan", "config key 'target-epsilon': nan is not a finite number"),
        ("target-epsilon=inf", "config key 'target-epsilon': inf is not a finite number"),
        ("delta=nan", "config key 'delta': nan is not a finite number"),
        ("clip-norm=-inf", "config key 'clip-norm': -inf is not a finite number"),
        ("seed=-1", "config key 'seed': -1 must be >= 0"),
        ("seed=4294967296", "config key 'seed': 4294967296 must be <= 4294967295"),
    ],
)
def test_non_finite_numbers_and_out_of_range_seeds_exit_2(
    pair: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["centralized", "--set", pair]) == 2
    assert capsys.readouterr().err == f"fedskip: error: {message}\n"


def test_nan_in_a_toml_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("target-epsilon = nan\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "config key 'target-epsilon': nan is not a finite number"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "layers = 2\n# café\n".encode("latin-1"),
            "{path}:2: config file is not valid UTF-8 (byte 0xe9 at offset 16); TOML files are "
            "UTF-8: re-save it as UTF-8",
        ),
        (
            "layers = 2\n".encode("utf-16"),
            "{path}: config file is UTF-16; TOML files are UTF-8: re-save it as UTF-8",
        ),
    ],
    ids=["latin-1", "utf-16"],
)
def test_toml_not_in_utf8_exits_2(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    assert main(["centralized", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"fedskip: error: {message.format(path=path)}\n"


def test_toml_with_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes("\ufefflayers = 3\n".encode())
    assert load_config(path).layers == 3
