"""Run-directory records and the model export (reloadable with plain transformers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fedskip.config import Config
from fedskip.errors import ModelError
from fedskip.records.rundir import RunDir, load_export, to_jsonable
from fedskip.records.schema import MetricsRow, RunSummary

LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test"]


def test_config_metrics_summary(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "a" / "b")
    cfg = Config(layers=3, lr=1e-3)
    run.write_config(cfg)
    assert json.loads(run.config_path.read_text())["layers"] == 3
    assert json.loads(run.config_path.read_text()) == cfg.to_run_config()
    run.append_metrics(MetricsRow(epoch=1, train_loss=np.float32(0.5), scores={"f1": math.nan}))
    run.append_metrics(MetricsRow(epoch=2, scores={"per_type": {"x": {"support": np.int64(3)}}}))
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"epoch": 1, "train_loss": 0.5, "elapsed_s": None, "test": {"f1": None}},
        {
            "epoch": 2,
            "train_loss": None,
            "elapsed_s": None,
            "test": {"per_type": {"x": {"support": 3}}},
        },
    ]
    run.write_summary(RunSummary({"final": {"f1": 0.25}, "path": tmp_path}))
    assert json.loads(run.summary_path.read_text()) == {
        "final": {"f1": 0.25},
        "path": str(tmp_path),
    }
    # a new run in the same folder starts fresh records
    RunDir(run.path).write_config(cfg)
    assert not run.metrics_path.exists() and not run.summary_path.exists()
    run.append_metrics(MetricsRow(epoch=1))
    RunDir(run.path).write_config(cfg, resume=True)
    assert run.read_metrics() == [MetricsRow(epoch=1)]


def test_to_jsonable() -> None:
    value = {"a": (1, np.array([1.5, 2.0])), "b": torch.tensor(3), "c": math.inf}
    assert to_jsonable(value) == {"a": [1, [1.5, 2.0]], "b": 3, "c": None}


def test_export_reloads_with_plain_transformers(tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from fedskip.models.loading import load_model

    torch.set_num_threads(1)
    model, tokenizer = load_model("llama-tiny", task="ner", labels=LABELS, device="cpu", seed=1)
    run = RunDir(tmp_path / "run")
    cfg = Config(model="llama-tiny", layers=1, max_length=64, truncation="tail")
    target = run.save_model(model, tokenizer, cfg=cfg, selected_layers=[3])
    assert target == tmp_path / "run" / "model"

    manifest = json.loads((target / "fedskip.json").read_text())
    assert manifest["task"] == "ner"
    assert manifest["labels"] == LABELS
    assert manifest["selected_layers"] == [3]
    assert manifest["config"]["max-length"] == 64

    plain = AutoModelForTokenClassification.from_pretrained(target).eval()
    plain_tok = AutoTokenizer.from_pretrained(target)
    assert plain.config.id2label == dict(enumerate(LABELS))
    batch = plain_tok(["chest pain since monday"], return_tensors="pt")
    assert batch["input_ids"].tolist() == tokenizer(["chest pain since monday"])["input_ids"]
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        got = plain(**batch).logits
    assert torch.equal(expected, got)

    exported = load_export(tmp_path / "run")  # a run directory works too
    assert (exported.task, exported.label_list, exported.multi_label) == ("ner", LABELS, False)
    assert exported.setting("max-length", 128) == 64
    assert (exported.max_length, exported.truncation) == (64, "tail")  # evaluate/predict cut so
    exported.manifest["config"].pop("truncation")
    assert exported.truncation == "head"  # an export from before the key: what it trained with
    assert exported.setting("no-such-key", "d") == "d"
    assert not exported.model.training


def test_load_export_rejects_non_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not an exported model"):
        load_export(tmp_path)
