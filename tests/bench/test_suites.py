"""Suite expansion, --set/--only handling and the bench command's bad-input cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedskip.bench.runner import SUITE_FILE, check_publishable, plan_suite, run_suite, select
from fedskip.bench.spec import METHOD_ORDER
from fedskip.cli import main
from fedskip.config import Config
from fedskip.errors import ConfigError


def test_paper_suite_configs() -> None:
    plan = plan_suite("paper")
    names = [c.name for c in plan.configs]
    # personalization: 5 more (ner-local shared); 6 NER + 3 classification methods, k, strategies, non-IID, DP, 6 same-blocks runs, and
    # seeds 43 and 44 of the 23 methods / layers / gaps / strategies configs; the DP groups on
    # their own corpus: 5 variants x 5 sample-level runs, seeds 43 and 44 of the 10 at ε = 8
    # and without DP, and 3 client-level runs; 130 configs, of which the 8 centralized ones
    # (full and same-blocks, x 3 seeds) also run with the other schedule: 24; ICD-9 layer
    # skipping's two federated-optimisation alternatives at 3 seeds: 6; the frontier's 10
    # variations at 3 seeds: 30; centralized training of bottom's and interleaved's blocks,
    # both schedules, 3 seeds: 12
    assert len(names) == len(set(names)) == 130 + 24 + 6 + 30 + 12
    same = {c.name: c for c in plan.configs if c.name.startswith("ner-centralized-")}
    assert same["ner-centralized-interleaved"].settings["layer-strategy"] == "interleaved"
    assert same["ner-centralized-bottom-lrrun-s44"].settings["lr-schedule"] == "run"
    assert not {"ner-centralized-rotating", "ner-centralized-importance"} & set(same)
    # paper-quick: 68 configs, and bottom's centralized same-blocks run (2 schedules x 3 seeds)
    assert len(plan_suite("paper-quick").configs) == 68 + 6
    assert names[:7] == ["ner-centralized", "ner-centralized-lrrun"] + [
        f"ner-{m}" for m in METHOD_ORDER[1:]
    ]
    groups = {c.name: c.groups for c in plan.configs}
    # the default layer-skipping run serves every axis; k = all blocks is the FedAvg run
    assert groups["ner-layerskip"] == ["methods", "layers", "strategies", "noniid"]
    assert groups["ner-fedavg"] == ["methods", "layers", "noniid"]
    assert groups["ner-layerskip-dp"] == ["privacy", "privacy-seeds"]
    assert groups["ner-layerskip-dp-eps4"] == ["privacy"]
    assert groups["ner-layerskip-cdp-eps8"] == ["client-dp"] and "ner-fedavg-cdp-eps8" not in groups
    assert groups["ner-lora-fa-dp-eps8-s44"] == ["privacy-seeds"]
    layer_runs = [c for c in plan.configs if "layers" in c.groups and "variant" not in c.labels]
    assert sorted(int(c.labels["k"]) for c in layer_runs) == [1, 2, 3, 4, 5, 6]
    by_name = {c.name: c for c in plan.configs}
    assert by_name["ner-layerskip-dir0.1"].settings["alpha"] == 0.1
    assert by_name["ner-fedavg-dp-eps2"].settings["target-epsilon"] == 2.0
    # DP-SGD on many patients with one short note each, 128-patient steps; client-level DP on
    # the smaller corpus of long notes
    dp = by_name["ner-fedavg-dp-eps2"].settings
    assert (dp["synth-docs"], dp["synth-notes-per-patient"], dp["synth-note-lines"]) == (4000, 1, 1)
    assert (dp["batch-size"], dp["grad-accum"], dp["dp-unit"]) == (64, 4, "patient")
    assert by_name["ner-layerskip-dp"].settings["synth-docs"] == 4000  # its no-DP reference
    assert by_name["ner-layerskip-k4-dp-eps8"].settings["layers"] == 4
    assert by_name["ner-layerskip-k4-dp-eps8"].labels["privacy_variant"] == "layerskip-k4"
    assert by_name["ner-layerskip-dp"].labels["privacy_variant"] == "layerskip"
    lora_fa = by_name["ner-lora-fa-dp-eps8"].settings
    assert (lora_fa["method"], lora_fa["lora-freeze-a"], lora_fa["lora-rank"]) == ("lora", True, 8)
    inside = by_name["ner-layerskip-lora-fa-dp-eps8"].settings  # frozen-A adapters in 2 blocks
    assert (inside["method"], inside["lora-freeze-a"], inside["lora-rank"]) == (
        "layerskip",
        True,
        8,
    )
    assert by_name["ner-layerskip-cdp-eps2"].settings["synth-docs"] == 240
    assert by_name["ner-layerskip-cdp-eps2"].settings["grad-accum"] == 4
    assert by_name["ner-layerskip-cdp-eps8"].settings["clients"] == 64
    assert by_name["ner-fedprox"].settings["layers"] == 6  # a full-model baseline
    assert by_name["classification-centralized"].settings["epochs"] == 20  # rounds x local epochs
    # ICD-9 coding: no run ends before round / epoch 10 (thresholded micro F1 starts at 0);
    # NER keeps the plain plateau rule
    assert {c.settings.get("min-rounds") for c in plan.configs if c.name.startswith("class")} == {
        10
    }
    assert "min-rounds" not in by_name["ner-layerskip"].settings
    quick = {c.name: c for c in plan_suite("paper-quick").configs}
    assert quick["classification-layerskip-s43"].settings["min-rounds"] == 5
    assert by_name["ner-centralized-k3"].groups == ["gaps"]
    assert by_name["ner-layerskip-s44"].settings["seed"] == 44
    assert by_name["ner-layerskip-s44"].labels["variant"] == "ner-layerskip"
    assert by_name["ner-layerskip-interleaved-s43"].groups == ["strategies"]
    assert by_name["ner-layerskip-interleaved-s43"].settings["seed"] == 43
    assert "ner-layerskip-iid-s43" not in by_name  # non-IID: one seed


def test_icd9_layer_skipping_is_chosen_on_validation_among_the_declared_federated_optimisers() -> (
    None
):
    """``fed-optim``: ICD-9 layer skipping (the methods group's run) and its alternatives, 4
    local epochs and FedAdam, each seed against its own seed's run; NER's k = 2 has none."""
    by_name = {c.name: c for c in plan_suite("paper").configs}
    base = by_name["classification-layerskip"]
    assert base.groups == ["methods", "fed-optim"]
    assert (
        base.labels["candidate"] == "FedAvg, 1 local epoch" and "candidate_for" not in base.labels
    )
    le4, adam = by_name["classification-layerskip-le4"], by_name["classification-layerskip-adam"]
    assert le4.settings["local-epochs"] == 4 and "server-optimizer" not in le4.settings
    assert (adam.settings["server-optimizer"], adam.settings["server-lr"]) == ("adam", 1e-2)
    shared = dict(base.settings)
    assert {k: le4.settings[k] for k in shared} == shared  # only the candidate's keys differ
    assert le4.labels["candidate_for"] == "classification-layerskip"
    replica = by_name["classification-layerskip-adam-s44"]
    assert replica.settings["seed"] == 44
    assert replica.labels["candidate_for"] == "classification-layerskip-s44"
    assert not [n for n in by_name if n.startswith("ner-layerskip-le4")]
    assert "candidate" not in by_name["ner-layerskip"].labels


def test_partial_settings_reach_runs_of_some_blocks_only(tmp_path: Path) -> None:
    """Layer skipping (k < all) and its centralized same-blocks runs get the partial learning
    rates; full fine-tuning, LoRA and the DP runs (their own keys win) do not."""
    plan = plan_suite("paper")
    lr = {c.name: plan.config_for(c, tmp_path) for c in plan.configs}
    for name in (
        "ner-layerskip",
        "ner-layerskip-k1",
        "ner-centralized-k2",
        "classification-layerskip",
        "ner-layerskip-iid",
        "ner-layerskip-s43",
    ):
        assert (lr[name].lr, lr[name].head_lr) == (2e-3, 1e-2), name
    # k > 2 blocks: lr 2e-3 x 2 / k, the same for the federated and the centralized run
    for k, expected in ((3, 1.33e-3), (4, 1e-3), (5, 8e-4)):
        for name in (f"ner-layerskip-k{k}", f"ner-centralized-k{k}", f"ner-layerskip-k{k}-s44"):
            assert (lr[name].lr, lr[name].head_lr) == (expected, 1e-2), name
    for name in ("ner-centralized", "ner-fedavg", "ner-fedprox", "ner-local"):
        assert (lr[name].lr, lr[name].head_lr) == (5e-4, 2e-3), name
    assert (lr["ner-lora"].lr, lr["ner-lora"].head_lr) == (2e-3, 2e-3)
    assert (lr["ner-layerskip-dp-eps8"].lr, lr["ner-layerskip-dp-eps8"].head_lr) == (2e-3, 5e-3)


def test_overrides_reach_every_config(tmp_path: Path) -> None:
    plan = plan_suite("smoke", ["rounds=3", "synth-docs=6"])
    cfg = plan.config_for(plan.configs[0], tmp_path)
    assert isinstance(cfg, Config)
    assert (cfg.rounds, cfg.synth_docs, cfg.method) == (3, 6, "centralized")
    assert cfg.epochs == 3  # centralized: same passes as a federated client
    assert cfg.out == str(tmp_path / "runs" / "ner-centralized")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=fedavg"], "--set method: the suite varies 'method' itself"),
        (["partition=iid"], "--set partition: the suite varies 'partition' itself"),
        (["roundz=2"], "unknown config key 'roundz'; did you mean rounds"),
        (["rounds=0"], "config key 'rounds': 0 must be >= 1"),
        (["rounds"], "--set expects key=value, got 'rounds'"),
    ],
)
def test_bad_overrides(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_suite("smoke", overrides)


def test_only_selects_by_group_or_glob() -> None:
    configs = plan_suite("smoke").configs
    assert [c.name for c in select(configs, ["layers"])] == ["ner-layerskip", "ner-layerskip-k1"]
    assert len(select(configs, ["classification-*"])) == 3
    with pytest.raises(ConfigError, match="--only nothing: matches no config"):
        select(configs, ["nothing"])


def test_extension_group() -> None:
    from dataclasses import replace

    from fedskip.bench.expansion import expand
    from fedskip.bench.spec import BenchConfig
    from fedskip.bench.suites import SMOKE

    def frontier(suite: Any, base: Config, blocks: int) -> list[BenchConfig]:
        return [BenchConfig("ner-layerskip-k1-r4", {"task": "ner", "layers": 1, "lora-rank": 4})]

    plan = plan_suite("smoke")
    suite = replace(SMOKE, extra_groups={"frontier": frontier})
    configs = expand(suite, plan.base, plan.num_blocks)
    assert [c.name for c in configs[:-1]] == [c.name for c in plan.configs]
    assert (configs[-1].name, configs[-1].groups) == ("ner-layerskip-k1-r4", ["frontier"])


def test_the_catalogue_lists_each_suites_extra_groups() -> None:
    """Groups beyond the axes come from the catalogue, not from which modules were imported."""
    from fedskip.bench.groups import (
        federated_optimisation_configs,
        frontier_configs,
        paper_frontier_configs,
        personalization_configs,
    )
    from fedskip.bench.suites import SUITES

    assert list(SUITES) == ["smoke", "paper", "paper-quick", "frontier"]
    assert {name: suite.extra_groups for name, suite in SUITES.items()} == {
        "smoke": {},
        "paper": {
            "personalization": personalization_configs,
            "fed-optim": federated_optimisation_configs,
            "frontier": paper_frontier_configs,
        },
        "paper-quick": {},
        "frontier": {"frontier": frontier_configs},
    }


def test_failed_config_is_recorded_and_the_suite_goes_on(tmp_path: Path) -> None:
    seen: list[str] = []

    def trainer(cfg: Config) -> dict[str, Any]:
        seen.append(cfg.method)
        if cfg.method == "centralized":
            raise RuntimeError("out of memory\nsecond line")
        Path(cfg.out).mkdir(parents=True)
        Path(cfg.out, "summary.json").write_text("{}")  # what a finished run leaves
        return {}

    lines: list[str] = []
    result = run_suite(
        "smoke",
        tmp_path,
        only=["ner-centralized", "ner-local"],
        progress=lines.append,
        trainer=trainer,
    )
    assert [o.status for o in result.outcomes] == ["failed", "trained"]
    assert (
        "RuntimeError: out of memory" in (tmp_path / "runs/ner-centralized/error.txt").read_text()
    )
    assert lines[0].startswith("[1/2] ner-centralized: failed (") and lines[0].endswith(
        "out of memory"
    )
    # resumed: the finished config is skipped, the failed one is tried again
    again = run_suite(
        "smoke",
        tmp_path,
        only=["ner-local", "ner-centralized"],
        progress=lines.append,
        trainer=trainer,
    )
    assert [(o.name, o.status) for o in again.outcomes] == [
        ("ner-centralized", "failed"),
        ("ner-local", "skipped"),
    ]
    assert seen == ["centralized", "local", "centralized"]
    assert json.loads((tmp_path / SUITE_FILE).read_text())["suite"] == "smoke"
    with pytest.raises(ConfigError, match="resume with the same settings or use another --out"):
        run_suite("smoke", tmp_path, ["rounds=3"], trainer=trainer)


def test_an_interrupted_federated_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A federated run stopped after some rounds (config.json and a checkpoint, no summary)
    goes on from its checkpoint, as ``fedskip run --resume`` would; a run directory whose
    config is another config's, or without a checkpoint, is trained afresh."""
    seen: list[tuple[str, bool]] = []

    def trainer(cfg: Config) -> dict[str, Any]:
        seen.append((Path(cfg.out).name, cfg.resume))
        Path(cfg.out, "summary.json").write_text("{}")
        return {}

    plan = plan_suite("smoke")
    by_name = {c.name: c for c in plan.configs}
    earlier = {"ner-fedavg": {"seed": 7}, "ner-fedprox": {"rounds": 9}}  # other settings' runs
    names = ["ner-layerskip", "ner-fedavg", "ner-fedprox", "ner-lora", "ner-layerskip-k1"]
    for name in names:
        cfg = plan.config_for(by_name[name], tmp_path).replace(**earlier.get(name, {}))
        run = Path(cfg.out)
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(cfg.to_run_config()))
        if name != "ner-lora":  # interrupted before its first round completed: no checkpoint
            (run / "checkpoint").mkdir()
            (run / "checkpoint" / "state.json").write_text("{}")
        if name == "ner-layerskip-k1":  # ended with a failed round: trained again from scratch
            (run / "summary.json").write_text(json.dumps({"failed_rounds": [2]}))
    run_suite("smoke", tmp_path, only=names, trainer=trainer)
    assert sorted(seen) == [
        ("ner-fedavg", False),
        ("ner-fedprox", False),
        ("ner-layerskip", True),
        ("ner-layerskip-k1", False),
        ("ner-lora", False),
    ]


def test_run_with_failed_rounds_counts_as_failed_and_is_retried(tmp_path: Path) -> None:
    """A run that ended but could not aggregate some round (every reply rejected) does not
    measure its config: failed outcome, error.txt, not finished in the report, retried on resume."""
    from fedskip.bench.records import load_run

    attempts: list[int] = []

    def trainer(cfg: Config) -> dict[str, Any]:
        attempts.append(1)
        summary = {
            "method": cfg.method,
            "task": cfg.task,
            "rounds": 2,
            "failed_rounds": [1, 2] if len(attempts) == 1 else [],
        }
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        Path(cfg.out, "config.json").write_text(json.dumps(cfg.to_run_config()))
        Path(cfg.out, "summary.json").write_text(json.dumps(summary))
        return summary

    first = run_suite("smoke", tmp_path, only=["ner-fedavg"], trainer=trainer)
    assert [(o.status, o.error.split(" (")[0]) for o in first.outcomes] == [
        ("failed", "rounds [1, 2] failed")
    ]
    run_dir = tmp_path / "runs" / "ner-fedavg"
    assert "rounds [1, 2] failed" in (run_dir / "error.txt").read_text()
    assert not load_run(run_dir).complete
    again = run_suite("smoke", tmp_path, only=["ner-fedavg"], trainer=trainer)
    assert [o.status for o in again.outcomes] == ["trained"] and len(attempts) == 2
    assert load_run(run_dir).complete and not (run_dir / "error.txt").exists()


def test_a_finished_run_that_the_suite_no_longer_names_stops_the_resume(tmp_path: Path) -> None:
    """A finished run is skipped on resume; if its config.json differs from what the suite now
    says (its definition changed since), resuming is an error naming the run and the keys,
    before anything trains. A key the record lacks counts as its default."""
    trained: list[str] = []

    def trainer(cfg: Config) -> dict[str, Any]:
        trained.append(cfg.method)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        Path(cfg.out, "config.json").write_text(json.dumps(cfg.to_run_config()))
        Path(cfg.out, "summary.json").write_text("{}")
        return {}

    run_suite("smoke", tmp_path, only=["ner-fedavg", "ner-local"], trainer=trainer)
    record = tmp_path / "runs" / "ner-fedavg" / "config.json"
    saved = json.loads(record.read_text())
    del saved["truncation"]  # written before the key existed: its default, as now
    record.write_text(json.dumps(saved))
    again = run_suite("smoke", tmp_path, only=["ner-fedavg", "ner-local"], trainer=trainer)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    record.write_text(json.dumps({**saved, "resume": True}))  # finished after a cut: the same run
    again = run_suite("smoke", tmp_path, only=["ner-fedavg"], trainer=trainer)
    assert [o.status for o in again.outcomes] == ["skipped"]
    check_publishable("smoke", tmp_path)

    saved.update({"lr": 0.1, "truncation": "tail"})  # as if the suite had said so back then
    record.write_text(json.dumps(saved))
    with pytest.raises(ConfigError) as caught:
        run_suite("smoke", tmp_path, only=["ner-local", "ner-fedavg"], trainer=trainer)
    assert str(caught.value) == (
        f"{tmp_path / 'runs' / 'ner-fedavg'}: finished with truncation='tail' (now 'head'), "
        "lr=0.1 (now 0.0005); the suite has changed since it ran. Remove that run "
        "directory to train it again, or use another --out"
    )
    assert trained == ["local", "fedavg"]  # nothing trained by the refused resumes
    # a resume that selects only the fresh run trains; publishing the folder does not
    assert run_suite("smoke", tmp_path, only=["ner-local"], trainer=trainer).outcomes
    dest = tmp_path / "published"
    argv = ["bench", "--suite", "smoke", "--out", str(tmp_path), "--report-only"]
    assert main([*argv, "--publish", str(dest)]) == 2
    assert not dest.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--suite", "smoke", "--set", "method=lora"], "--set method: the suite varies"),
        (["bench", "--suite", "smoke", "--list", "--only", "x*"], "--only x*: matches no config"),
        (["bench", "--suite", "smoke", "--report-only", "--out", "{tmp}"], "not a bench folder"),
    ],
)
def test_bench_cli_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bench_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--suite", "smoke", "--list", "--only", "privacy"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["ner-layerskip", "ner-layerskip-eps8"]


def test_tracked_suite_logs_one_run_per_config_in_one_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from fedskip.records.rundir import RunDir
    from fedskip.records.schema import MetricsRow, RunSummary

    def trainer(cfg: Config) -> dict[str, Any]:  # what every real trainer does with its rows
        run = RunDir(cfg.out)
        run.write_config(cfg)
        run.append_metrics(MetricsRow(epoch=1, train_loss=0.5))
        run.close()
        run.write_summary(RunSummary({}))
        return {}

    only = ["ner-centralized", "ner-local"]
    run_suite(
        "smoke",
        tmp_path,
        ["tracking=tensorboard,mlflow"],
        only=only,
        progress=lambda line: None,
        trainer=trainer,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fedskip").experiment_id])
    assert sorted((r.info.run_name, r.data.metrics["train/loss"]) for r in runs) == [
        ("ner-centralized", 0.5),
        ("ner-local", 0.5),
    ]
    for name in only:
        assert any((tmp_path / "runs" / name / "tensorboard").iterdir())
        assert not (tmp_path / "runs" / name / "mlflow.db").exists()
