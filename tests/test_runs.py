"""The run layer: one typed row schema for every method, and LoRA for centralized runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.records.schema import MetricsRow, RunSummary

PER_TYPE = {"problem": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 65}}
SCORES = {"f1": 0.25, "precision": 0.5, "recall": 0.125, "per_type": PER_TYPE, "sentences": 125}

# Rows exactly as the three writers put them in metrics.jsonl before the typed schema existed
# (copied from a `fedskip bench --suite smoke` run; numbers shortened).
ROUND_ROW: dict[str, Any] = {
    "round": 1,
    "status": "ok",
    "train_loss": 1.577,
    **SCORES,
    "client_eval": {},
    "bytes_down": 56849392,
    "bytes_up": 56849392,
    "bytes_eval": 0,
    "cum_bytes_down": 56849392,
    "cum_bytes_up": 56849392,
    "cum_bytes": 113698784,
    "seconds": 7.6,
    "elapsed_s": 27.5,
    "selected_layers": [4, 5],
    "clients": [0, 1, 2, 3],
    "replies_ok": 4,
    "replies_rejected": 0,
    "rejections": [],
    "failure": "",
    "epsilon": None,
}
DP_ROUND_ROW: dict[str, Any] = {
    **ROUND_ROW,
    "round": 2,
    "status": "failed",
    "train_loss": None,
    "client_eval": {"f1": 0.5},
    "rejections": ["client 1: NaN in update"],
    "failure": "too few valid replies",
    "epsilon": 2.5,
    "site_eval": {"site-0": {"f1": 0.25}},
}
TIMED_ROUND_ROW: dict[str, Any] = {
    **ROUND_ROW,
    "round": 3,
    "train_seconds": {"0": 1.5, "1": 2.25, "2": 0.5, "3": 0.75},
}
EPOCH_ROW: dict[str, Any] = {"epoch": 1, "train_loss": 0.967, "elapsed_s": 8.7, "test": SCORES}
SITE_EPOCH_ROW: dict[str, Any] = {"client": 0, "epoch": 1, "train_loss": 1.247, **SCORES}
EMPTY_EPOCH_ROW: dict[str, Any] = {"epoch": 2, "train_loss": 0.5, "elapsed_s": 9.0, "test": {}}


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        (ROUND_ROW, "round"),
        (DP_ROUND_ROW, "round"),
        (TIMED_ROUND_ROW, "round"),
        (EPOCH_ROW, "epoch"),
        (EMPTY_EPOCH_ROW, "epoch"),
        (SITE_EPOCH_ROW, "site-epoch"),
    ],
)
def test_the_typed_row_round_trips_what_is_written(row: dict[str, Any], kind: str) -> None:
    typed = MetricsRow.from_json(json.loads(json.dumps(row)))
    assert typed.kind == kind
    assert json.dumps(typed.to_json()) == json.dumps(row)  # same keys, same order, same values


def test_client_train_seconds_sum_every_trained_round_or_are_not_claimed() -> None:
    from fedskip.federation.round_rows import client_train_seconds

    timed = MetricsRow.from_json(TIMED_ROUND_ROW)
    assert timed.train_seconds == {"0": 1.5, "1": 2.25, "2": 0.5, "3": 0.75}
    assert MetricsRow.from_json(ROUND_ROW).train_seconds == {}  # written before the key existed
    nothing = MetricsRow(round=4, status="failed", replies_ok=0)
    assert client_train_seconds([timed, timed, nothing]) == {"client_train_seconds": 10.0}
    assert client_train_seconds([timed, MetricsRow.from_json(ROUND_ROW)]) == {}  # undercount
    one_silent = MetricsRow.from_json({**TIMED_ROUND_ROW, "train_seconds": {"0": 1.5}})
    assert client_train_seconds([timed, one_silent]) == {}  # 1 of 4 accepted replies timed
    assert client_train_seconds([]) == {}


def test_row_accessors() -> None:
    federated = MetricsRow.from_json(DP_ROUND_ROW)
    assert (federated.step, federated.cum_bytes, federated.metric("f1")) == (2, 113698784, 0.25)
    assert (
        MetricsRow.from_json({**ROUND_ROW, "f1": None, "client_eval": {"f1": 0.5}}).metric("f1")
        == 0.5
    )  # the clients' evaluation when the server did not evaluate
    centralized = MetricsRow.from_json(EPOCH_ROW)
    assert (centralized.step, centralized.cum_bytes, centralized.metric("recall")) == (1, 0, 0.125)
    assert MetricsRow.from_json(EMPTY_EPOCH_ROW).metric("f1") is None


def test_summary_accessors() -> None:
    federated = RunSummary(
        {
            "primary_metric": "f1",
            "final_metric": 0.5,
            "best_metric": 0.75,
            "seconds": 3,
            "bytes": {"down": 10, "up": 20},
            "failed_rounds": [2],
            "reduction": 0.25,
        }
    )
    assert (federated.final_metric, federated.number("best_metric"), federated.total_bytes) == (
        0.5,
        0.75,
        30,
    )
    assert (federated.failed_rounds, federated.finished, federated.number("seconds")) == (
        [2],
        False,
        3.0,
    )
    centralized = RunSummary({"primary_metric": "f1", "final": {"f1": 0.25}, "seconds": 1.5})
    assert (centralized.final_metric, centralized.total_bytes, centralized.finished) == (
        0.25,
        None,
        True,
    )
    local = RunSummary({"primary_metric": "macro_f1", "mean_metric": 0.125, "best_metric": 0.5})
    assert (local.final_metric, local.number("best_metric")) == (0.125, 0.5)
    assert json.loads(json.dumps(local)) == local.to_json()


def test_infinite_epsilon_is_written_as_inf_and_read_back(tmp_path: Path) -> None:
    from fedskip.bench.records import load_run
    from fedskip.records.rundir import RunDir

    row = MetricsRow.from_json({**DP_ROUND_ROW, "epsilon": "inf"})
    assert row.epsilon == math.inf
    assert row.to_json()["epsilon"] == "inf"
    run = RunDir(tmp_path)
    run.append_metrics(MetricsRow.from_json({**ROUND_ROW, "epsilon": math.inf}))
    assert json.loads(run.metrics_path.read_text())["epsilon"] == "inf"  # not null: not "no DP"
    assert run.read_metrics()[0].epsilon == math.inf
    summary = {
        "primary_metric": "f1",
        "epsilon": math.inf,
        "audit": {"accountant_epsilon": math.inf},
    }
    run.write_summary(RunSummary(summary))
    written = json.loads(run.summary_path.read_text())
    assert (written["epsilon"], written["audit"]["accountant_epsilon"]) == ("inf", "inf")
    (tmp_path / "config.json").write_text(json.dumps({"method": "layerskip", "task": "ner"}))
    assert load_run(tmp_path).epsilon == math.inf
    assert RunSummary(written).number("epsilon") == math.inf


# --------------------------------------------------------------------------- LoRA, centralized
SENTENCES = [
    (["patient", "denies", "chest", "pain"], ["O", "O", "B-problem", "I-problem"]),
    (["ordered", "a", "chest", "x-ray"], ["O", "O", "B-test", "I-test"]),
    (["started", "aspirin", "today"], ["O", "B-treatment", "O"]),
]


@pytest.fixture
def lora_cfg(tmp_path: Path) -> Config:
    torch.set_num_threads(1)
    for s in range(2):
        folder = tmp_path / "sites" / f"site-{s}"
        folder.mkdir(parents=True)
        lines = [
            json.dumps({"id": f"d{s}-{i}", "tokens": tokens, "tags": tags})
            for i, (tokens, tags) in enumerate(SENTENCES * 2)
        ]
        (folder / "notes.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return Config(
        data=str(tmp_path / "sites"),
        model="llama-tiny",
        device="cpu",
        quiet=True,
        method="centralized",
        lora_rank=4,
        layers=2,
        epochs=1,
        batch_size=4,
        max_length=16,
        stride=4,
        lr=1e-2,
        out=str(tmp_path / "run"),
    )


def _is_lora_or_head(name: str, stack: Any) -> bool:
    from fedskip.models.lora import PEFT_PREFIX

    plain = name.removeprefix(PEFT_PREFIX)
    return any(m in name for m in (".lora_A.", ".lora_B.", ".modules_to_save.")) or (
        stack.is_final_norm(plain)
    )


@pytest.mark.parametrize("method", ["centralized", "local"])
def test_lora_rank_trains_adapters_in_the_selected_blocks_only(
    lora_cfg: Config, method: str
) -> None:
    from fedskip.pipeline import prepare
    from fedskip.trainability import build_trainable, trained_blocks

    cfg = lora_cfg.replace(method=method)
    bundle, layers = build_trainable(cfg, prepare(cfg))
    names = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    assert bundle.lora and layers == [2, 3] and trained_blocks(bundle) == [2, 3]
    assert names and all(_is_lora_or_head(n, bundle.stack) for n in names)
    assert any(".lora_B." in n for n in names) and any(".modules_to_save." in n for n in names)


def test_fedskip_centralized_with_lora_rank_trains_adapters_only(lora_cfg: Config) -> None:
    from fedskip.cli import main
    from fedskip.models.loading import load_model
    from fedskip.records.rundir import load_export

    out = Path(lora_cfg.out)
    sets = [
        f"data={lora_cfg.data}",
        "model=llama-tiny",
        "device=cpu",
        "lora-rank=4",
        "layers=2",
        "epochs=1",
        "batch-size=4",
        "max-length=16",
        "stride=4",
        "lr=1e-2",
        f"out={out}",
    ]
    assert main(["centralized", "--quiet", "--set", *sets]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected_layers"] == [2, 3]
    assert summary["parameters"]["trainable"] < summary["parameters"]["total"] // 10
    # the export (adapters merged) differs from the pretrained model only in blocks 2 and 3,
    # the final norm (trained with the top block) and the head: every other weight was frozen
    labels = load_export(out / "model").label_list
    base, _ = load_model("llama-tiny", task="ner", labels=labels, device="cpu", seed=42)
    trained = dict(load_export(out / "model").model.named_parameters())
    changed = {
        name.split(".")[2] if name.startswith("model.layers.") else name.rsplit(".", 1)[0]
        for name, param in base.named_parameters()
        if not torch.equal(param, trained[name])
    }
    assert changed == {"2", "3", "model.norm", "score"}
