"""Tracking: metrics rows as TensorBoard event files and MLflow runs, read back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedskip.cli import main
from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.rundir import RunDir
from fedskip.runs.schema import MetricsRow
from fedskip.tracking import round_scalars

# Two federated rows as fedskip.fl.records.round_row writes them (values exact in float32).
ROWS: list[dict[str, Any]] = [
    MetricsRow(
        round=1,
        train_loss=1.5,
        scores={"f1": 0.25, "per_type": {"problem": {"f1": 0.5, "support": 4}}},
        client_eval={"f1": 0.125},
        bytes_down=1000,
        bytes_up=1000,
        cum_bytes_down=1000,
        cum_bytes_up=1000,
        seconds=2.5,
        elapsed_s=2.5,
        selected_layers=[3],
        clients=[0, 1],
        replies_ok=2,
    ).to_json(),
    MetricsRow(
        round=2,
        train_loss=0.75,
        scores={"f1": 0.5, "per_type": {"problem": {"f1": 0.75, "support": 4}}},
        client_eval={"f1": 0.375},
        bytes_down=1000,
        bytes_up=1000,
        cum_bytes_down=2000,
        cum_bytes_up=2000,
        seconds=1.25,
        elapsed_s=3.75,
        selected_layers=[2],
        clients=[0, 1],
        replies_ok=2,
        epsilon=2.0,
    ).to_json(),
]

TRAFFIC_1 = {"bytes_down": 1000.0, "bytes_up": 1000.0, "bytes_eval": 0.0}
ROUND_1 = {
    "train_loss": 1.5,
    "f1": 0.25,
    "per_type/problem/f1": 0.5,
    "per_type/problem/support": 4.0,
    "client_eval/f1": 0.125,
    **TRAFFIC_1,
    "cum_bytes_down": 1000.0,
    "cum_bytes_up": 1000.0,
    "cum_bytes": 2000.0,
    "seconds": 2.5,
    "elapsed_s": 2.5,
    "replies_ok": 2.0,
    "replies_rejected": 0.0,
    "selected_blocks/3": 1.0,
}
ROUND_2 = {
    "train_loss": 0.75,
    "f1": 0.5,
    "per_type/problem/f1": 0.75,
    "per_type/problem/support": 4.0,
    "client_eval/f1": 0.375,
    **TRAFFIC_1,
    "cum_bytes_down": 2000.0,
    "cum_bytes_up": 2000.0,
    "cum_bytes": 4000.0,
    "seconds": 1.25,
    "elapsed_s": 3.75,
    "replies_ok": 2.0,
    "replies_rejected": 0.0,
    "epsilon": 2.0,
    "selected_blocks/2": 1.0,
    "selected_blocks/3": 0.0,
}


def _write_run(out: Path, tracking: str, rows: list[dict[str, Any]], **changes: Any) -> RunDir:
    run = RunDir(out)
    run.write_config(Config(tracking=tracking, out=str(out), **changes))
    for row in rows:
        run.append_metrics(MetricsRow.from_json(row))
    run.close()
    return run


def test_round_scalars_of_federated_centralized_and_local_rows() -> None:
    step, values = round_scalars(ROWS[0])
    assert step == 1
    assert values == {k: v for k, v in ROUND_1.items() if not k.startswith("selected_blocks")}
    centralized = {"epoch": 3, "train_loss": 0.5, "elapsed_s": 9.0, "test": {"f1": 0.25}}
    assert round_scalars(centralized) == (3, {"train_loss": 0.5, "elapsed_s": 9.0, "test/f1": 0.25})
    local = {"client": 1, "epoch": 2, "train_loss": 0.5, "f1": float("nan"), "accuracy": 1}
    assert round_scalars(local) == (2, {"client_1/train_loss": 0.5, "client_1/accuracy": 1.0})


def test_tensorboard_event_files_hold_every_scalar(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _write_run(tmp_path / "run", "tensorboard", ROWS)
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    logged = {
        (tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)
    }
    expected = {(k, 1): v for k, v in ROUND_1.items()} | {(k, 2): v for k, v in ROUND_2.items()}
    assert logged == expected
    (config,) = events.Tensors("config/text_summary")
    assert '"tracking": "tensorboard"' in config.tensor_proto.string_val[0].decode()


def _mlflow_runs(uri: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fedskip")
    return list(client.search_runs([experiment.experiment_id])) if experiment else []


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_mlflow_store_holds_the_run_its_params_and_metrics(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run-a", "mlflow", ROWS, rounds=3)
    uri = f"sqlite:///{run.path.resolve() / 'mlflow.db'}"
    (found,) = _mlflow_runs(uri)
    assert found.info.run_name == "run-a" and found.info.status == "FINISHED"
    assert found.data.params["tracking"] == "mlflow" and found.data.params["rounds"] == "3"
    assert found.data.metrics == ROUND_2  # the latest value of every metric
    assert _history(uri, found.info.run_id, "f1") == [(1, 0.25), (2, 0.5)]
    assert _history(uri, found.info.run_id, "selected_blocks/3") == [(1, 1.0), (2, 0.0)]


def test_mlflow_resume_continues_the_run_of_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _write_run(out, "mlflow", ROWS[:1])
    _write_run(out, "mlflow", ROWS[1:], resume=True)
    uri = f"sqlite:///{out.resolve() / 'mlflow.db'}"
    (found,) = _mlflow_runs(uri)
    assert _history(uri, found.info.run_id, "train_loss") == [(1, 1.5), (2, 0.75)]


def test_mlflow_uri_puts_several_runs_in_one_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    for name in ("first", "second"):
        _write_run(tmp_path / name, "tensorboard,mlflow", ROWS[:1], mlflow_uri=uri)
    assert sorted(r.info.run_name for r in _mlflow_runs(uri)) == ["first", "second"]
    assert (tmp_path / "first" / "tensorboard").is_dir()
    assert not (tmp_path / "first" / "mlflow.db").exists()


def test_a_failed_run_is_marked_failed(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_config(Config(tracking="mlflow", out=str(run.path)))
    run.close(ok=False)
    run.close()  # idempotent
    (found,) = _mlflow_runs(f"sqlite:///{run.path.resolve() / 'mlflow.db'}")
    assert found.info.status == "FAILED"


def test_no_tracking_writes_no_tracking_files(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", "none", ROWS)
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "metrics.jsonl"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", []),
        ("tensorboard", ["tensorboard"]),
        (" mlflow , tensorboard ", ["mlflow", "tensorboard"]),
        ("tensorboard,tensorboard", ["tensorboard"]),
        ("none,mlflow", ["mlflow"]),
    ],
)
def test_tracking_lists(value: str, expected: list[str]) -> None:
    assert Config(tracking=value).tracking_list() == expected


@pytest.mark.parametrize("value", ["wandb", "tensorboard;mlflow", "tensorboard,csv"])
def test_bad_tracking_is_a_one_line_config_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="config key 'tracking'"):
        Config(tracking=value)
    assert main(["run", "--set", f"tracking={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not one of none, tensorboard, mlflow" in err


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow"])
@pytest.mark.parametrize("command", ["run", "centralized"])
def test_missing_backend_names_the_pip_extra(
    backend: str, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == backend else real(name, *a)
    )
    assert main([command, "--set", f"tracking={backend}", "model=llama-tiny"]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: config key 'tracking': {backend} is not installed; "
        f'pip install "fedskip[{backend}]"\n'
    )
