"""Tracking: metrics rows as TensorBoard event files and MLflow runs, read back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedskip.cli import main
from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.records.rundir import RunDir
from fedskip.records.schema import MetricsRow, RunSummary
from fedskip.tracking import round_scalars

# Two federated rows as fedskip.federation.round_rows.round_row writes them (values exact in float32, also
# the byte counts in MB).
ROWS: list[dict[str, Any]] = [
    MetricsRow(
        round=1,
        train_loss=1.5,
        scores={"f1": 0.25, "per_type": {"problem": {"f1": 0.5, "support": 4}}},
        client_eval={"f1": 0.125},
        bytes_down=500_000,
        bytes_up=500_000,
        cum_bytes_down=500_000,
        cum_bytes_up=500_000,
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
        bytes_down=500_000,
        bytes_up=500_000,
        cum_bytes_down=1_000_000,
        cum_bytes_up=1_000_000,
        seconds=1.25,
        elapsed_s=3.75,
        selected_layers=[2],
        clients=[0, 1],
        replies_ok=2,
        epsilon=2.0,
        train_seconds={"0": 0.5, "1": 0.625},
    ).to_json(),
]

TRAFFIC_1 = {"comm/down_MB": 0.5, "comm/up_MB": 0.5, "comm/eval_MB": 0.0}
ROUND_1 = {
    "train/loss": 1.5,
    "eval/f1": 0.25,
    "eval/per_type/problem/f1": 0.5,
    "eval/per_type/problem/support": 4.0,
    "eval/clients/f1": 0.125,
    **TRAFFIC_1,
    "comm/cum_down_MB": 0.5,
    "comm/cum_up_MB": 0.5,
    "comm/cum_MB": 1.0,
    "train/seconds": 2.5,
    "train/elapsed_s": 2.5,
    "train/replies_ok": 2.0,
    "train/replies_rejected": 0.0,
    "train/selected_blocks/3": 1.0,
}
ROUND_2 = {
    "train/loss": 0.75,
    "eval/f1": 0.5,
    "eval/per_type/problem/f1": 0.75,
    "eval/per_type/problem/support": 4.0,
    "eval/clients/f1": 0.375,
    **TRAFFIC_1,
    "comm/cum_down_MB": 1.0,
    "comm/cum_up_MB": 1.0,
    "comm/cum_MB": 2.0,
    "train/seconds": 1.25,
    "train/elapsed_s": 3.75,
    "train/replies_ok": 2.0,
    "train/replies_rejected": 0.0,
    "privacy/epsilon": 2.0,
    "train/client_seconds/0": 0.5,
    "train/client_seconds/1": 0.625,
    "train/selected_blocks/2": 1.0,
    "train/selected_blocks/3": 0.0,
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
    assert values == {k: v for k, v in ROUND_1.items() if "selected_blocks" not in k}
    centralized = {"epoch": 3, "train_loss": 0.5, "elapsed_s": 9.0, "test": {"f1": 0.25}}
    assert round_scalars(centralized) == (
        3,
        {"train/loss": 0.5, "train/elapsed_s": 9.0, "eval/f1": 0.25},
    )
    local = {"client": 1, "epoch": 2, "train_loss": 0.5, "f1": float("nan"), "accuracy": 1}
    assert round_scalars(local) == (
        2,
        {"train/client_1/loss": 0.5, "eval/client_1/accuracy": 1.0},
    )


def test_every_section_of_a_row_has_its_group() -> None:
    """Validation, per-site and personalized scores under ``eval/``, DP-SGD's step figures
    under ``privacy/``."""
    row = {
        "round": 4,
        "f1": 0.5,
        "val": {"f1": 0.25},
        "site_eval": {"site-1": {"f1": 0.75}},
        "personal_eval": {"mean": {"personal": {"f1": 0.125}}},
        "dp_step": {"noise_norm": 8.0},
        "epsilon": "inf",
    }
    assert round_scalars(row) == (
        4,
        {
            "eval/f1": 0.5,
            "eval/val/f1": 0.25,
            "eval/sites/site-1/f1": 0.75,
            "eval/personal/mean/personal/f1": 0.125,
            "privacy/dp_step/noise_norm": 8.0,
        },
    )


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
    assert _history(uri, found.info.run_id, "eval/f1") == [(1, 0.25), (2, 0.5)]
    assert _history(uri, found.info.run_id, "train/selected_blocks/3") == [(1, 1.0), (2, 0.0)]


def test_mlflow_resume_continues_the_run_of_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _write_run(out, "mlflow", ROWS[:1])
    _write_run(out, "mlflow", ROWS[1:], resume=True)
    uri = f"sqlite:///{out.resolve() / 'mlflow.db'}"
    (found,) = _mlflow_runs(uri)
    assert _history(uri, found.info.run_id, "train/loss") == [(1, 1.5), (2, 0.75)]


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


def _finished_run(out: Path, tracking: str) -> Path:
    """A two-round layer-skipping run with an exported model (its records written through the
    trackers), then what its training command does at the end: report and outputs."""
    from fedskip.commands.common import leave_report

    run = _write_run(out, tracking, ROWS, method="layerskip", rounds=2)
    summary = {
        "method": "layerskip",
        "task": "ner",
        "primary_metric": "f1",
        "final_metric": 0.5,
        "best_metric": 0.5,
        "best_round": 2,
        "bytes": {"down": 1_000_000, "up": 1_000_000, "total": 2_000_000},
        "rounds_completed": 2,
        "seconds": 3.75,
        "selected_layers": [2, 3],
    }
    run.write_summary(RunSummary(summary))
    (out / "model").mkdir()
    (out / "model" / "config.json").write_text("{}")
    (out / "model" / "README.md").write_text("# model card\n")
    assert leave_report(out) == out / "report.md"
    return out


def test_mlflow_gets_the_final_figures_and_the_artifacts(tmp_path: Path) -> None:
    """report.md, report.csv, summary.json, config.json, the plots and the exported model,
    listed back from the store; the final metric beside the config's parameters."""
    from mlflow.tracking import MlflowClient

    out = _finished_run(tmp_path / "run", "mlflow")
    uri = f"sqlite:///{out.resolve() / 'mlflow.db'}"
    (found,) = _mlflow_runs(uri)
    assert found.info.status == "FINISHED" and found.data.params["method"] == "layerskip"
    finals = {k: v for k, v in found.data.metrics.items() if "final" in k or "total" in k}
    assert finals == {"eval/final_f1": 0.5, "comm/total_MB": 2.0}
    assert found.data.metrics["eval/best_f1"] == 0.5
    client = MlflowClient(tracking_uri=uri)
    run_id = found.info.run_id

    def listed(path: str | None = None) -> list[str]:
        return sorted(a.path for a in client.list_artifacts(run_id, path))

    assert listed() == [
        "config.json",
        "model",
        "plots",
        "report.csv",
        "report.md",
        "summary.json",
    ]
    assert listed("plots") == ["plots/ner-metric-vs-mb.png", "plots/ner-metric-vs-round.png"]
    assert listed("model") == ["model/README.md", "model/config.json"]
    copy = Path(client.download_artifacts(run_id, "report.md", str(tmp_path)))
    assert copy.read_text() == (out / "report.md").read_text()


def test_full_mlflow_logs_the_model_with_the_transformers_flavour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the ``mlflow`` extra (here pretended), the model goes through
    ``mlflow.transformers.log_model`` inside the run, which stays as it ended."""
    import mlflow
    import mlflow.transformers

    import fedskip.tracking

    calls: list[tuple[Any, ...]] = []

    def log_model(model: str, *, name: str, task: str | None) -> None:
        calls.append((model, name, task, mlflow.active_run().info.run_id))

    before = mlflow.get_tracking_uri()
    monkeypatch.setattr(fedskip.tracking, "full_mlflow", lambda: True)
    monkeypatch.setattr(mlflow.transformers, "log_model", log_model)
    out = _finished_run(tmp_path / "run", "mlflow")
    (found,) = _mlflow_runs(f"sqlite:///{out.resolve() / 'mlflow.db'}")
    assert calls == [(str(out / "model"), "model", "token-classification", found.info.run_id)]
    assert found.info.status == "FINISHED" and mlflow.get_tracking_uri() == before


def test_tensorboard_gets_the_config_as_hparams_with_the_final_metric(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    out = _finished_run(tmp_path / "run", "tensorboard")
    folder = out / "tensorboard"
    plugin = {}
    for path in sorted(folder.iterdir()):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    plugin[data.WhichOneof("data")] = data
    hparams = plugin["session_start_info"].session_start_info.hparams
    assert hparams["method"].string_value == "layerskip"
    assert hparams["rounds"].number_value == 2
    assert hparams["tracking"].string_value == "tensorboard"
    metrics = [m.name.tag for m in plugin["experiment"].experiment.metric_infos]
    assert metrics == ["eval/final_f1", "eval/best_f1", "comm/total_MB"]
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/final_f1")] == [(2, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("comm/total_MB")] == [(2, 2.0)]
