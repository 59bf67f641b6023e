"""`fedskip centralized`, `fedskip evaluate` and `fedskip predict` end to end on tiny data."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.cli import main
from fedskip.config import Config
from fedskip.records.rundir import RunDir

# (text line, [(first token, last token, type)])
LINES = [
    ("patient denies chest pain", [(2, 3, "problem")]),
    ("ordered a chest x-ray today", [(2, 3, "test")]),
    ("started aspirin for fever", [(1, 1, "treatment"), (3, 3, "problem")]),
    ("no acute distress", [(1, 2, "problem")]),
    ("repeat the ct scan tomorrow", [(2, 3, "test")]),
]


def i2b2_files(site: str, n: int) -> dict[str, str]:
    """``n`` two-line i2b2 notes (txt/ + concept/) for ``site``."""
    files = {}
    for i in range(n):
        doc = f"{site}-{i:02d}"
        picked = [LINES[(i + k) % len(LINES)] for k in (0, 2)]
        files[f"{site}/txt/{doc}.txt"] = "\n".join(text for text, _ in picked) + "\n"
        cons = []
        for line_no, (text, ents) in enumerate(picked, start=1):
            words = text.split()
            for a, b, kind in ents:
                cons.append(
                    f'c="{" ".join(words[a : b + 1])}" {line_no}:{a} {line_no}:{b}||t="{kind}"'
                )
        files[f"{site}/concept/{doc}.con"] = "\n".join(cons) + "\n"
    return files


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One centralized run of llama-tiny on two i2b2 sites (shared by the tests below)."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("cli")
    files = {**i2b2_files("site-a", 6), **i2b2_files("site-b", 6)}
    data = root / "data"
    for rel, text in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(text)
    out = root / "run"
    sets = [
        f"data={data}",
        "model=llama-tiny",
        "device=cpu",
        "epochs=2",
        "batch-size=4",
        "lr=5e-3",
        "layers=2",
        "max-length=32",
        "stride=8",
        f"out={out}",
        "test-fraction=0.25",
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["centralized", "--set", *sets, "--quiet"])
    return {
        "code": code,
        "data": data,
        "out": out,
        "files": files,
        "sets": sets,
        "printed": printed.getvalue(),
    }


def test_centralized_writes_run_directory(trained: dict[str, Any], capsys: Any) -> None:
    assert trained["code"] == 0
    out = trained["out"]
    run = RunDir(out)
    config = json.loads(run.config_path.read_text())
    assert (config["method"], config["epochs"], config["layers"]) == ("centralized", 2, 2)
    rows = run.read_metrics()
    assert [r.epoch for r in rows] == [1, 2]
    assert all(math.isfinite(r.train_loss or math.nan) and "f1" in r.scores for r in rows)
    summary = json.loads(run.summary_path.read_text())
    assert summary["final"] == rows[-1].scores
    assert summary["selected_layers"] == [2, 3]
    assert summary["primary_metric"] == "f1"
    assert summary["data"]["train_documents"] == 8 and summary["data"]["test_documents"] == 4
    assert summary["train"]["examples"] == 16  # 2 sentences (lines) per training note
    assert summary["parameters"]["trainable"] < summary["parameters"]["total"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "fedskip.json"):
        assert (out / "model" / name).is_file(), name


def _write_subset(root: Path, files: dict[str, str], docs: set[str]) -> Path:
    for rel, text in files.items():
        if Path(rel).stem in docs:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    return root


def test_evaluate_matches_final_test_metrics(
    trained: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    from fedskip.config import load_config
    from fedskip.pipeline import prepare

    prepared = prepare(load_config(None, trained["sets"]))
    test_ids = {d.doc_id for d in prepared.global_test}
    test_data = _write_subset(tmp_path / "test", trained["files"], test_ids)
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--model",
            str(trained["out"] / "model"),
            "--data",
            str(test_data),
            "--json",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    final = json.loads((trained["out"] / "summary.json").read_text())["final"]
    for key in ("f1", "precision", "recall", "per_type", "sentences"):
        assert got[key] == final[key], key
    assert got["task"] == "ner"
    assert main(["evaluate", "--model", str(trained["out"]), "--data", str(test_data)]) == 0
    assert "strict entity F1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"x/a.txt": "has fever\n", "x/a.ann": "T1\tsymptom 4 9\tfever\n"},
            "symptom are not in the model's entity types",
        ),
        (
            {"x/notes.jsonl": '{"text": "a note", "label": "Radiology"}\n'},
            "holds classification data but the model is a ner model",
        ),
    ],
)
def test_evaluate_bad_data(
    trained: dict[str, Any], write_tree: Any, capsys: Any, files: dict[str, str], message: str
) -> None:
    data = write_tree(files) / "x"
    assert main(["evaluate", "--model", str(trained["out"] / "model"), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_evaluate_on_an_empty_note_warns_that_f1_measures_nothing(
    trained: dict[str, Any], write_tree: Any, capsys: Any
) -> None:
    data = write_tree({"x/a.txt": "", "x/a.ann": ""}) / "x"
    assert main(["evaluate", "--model", str(trained["out"] / "model"), "--data", str(data)]) == 0
    captured = capsys.readouterr()
    assert "strict entity F1 0.0000" in captured.out
    assert captured.err == (
        f"fedskip: warning: {data}: 1 empty note(s) without a word, nothing to learn or score "
        f"in them: {data / 'a.txt'}\n"
        f"fedskip: warning: {data}: no entity to score (every note is empty or unannotated): "
        "the F1 of 0.0000 measures nothing\n"
    )


def test_evaluate_missing_model(tmp_path: Path, capsys: Any) -> None:
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not an exported model" in capsys.readouterr().err


def test_predict_on_trained_model(trained: dict[str, Any], capsys: Any) -> None:
    text = "Patient denies chest pain.\nStarted aspirin for fever"
    assert (
        main(["predict", "--model", str(trained["out"] / "model"), "--text", text, "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "ner"
    for ent in result["entities"]:
        assert ent["text"] == text[ent["start"] : ent["end"]]
        assert ent["type"] in ("problem", "test", "treatment")
        assert 0.0 < ent["score"] <= 1.0


# --------------------------------------------------------------------------- fixed-output heads
def _tiny_bert_export(
    out: Path,
    task: str,
    labels: list[str],
    bias: list[float],
    *,
    multi_label: bool = False,
    max_length: int = 128,
) -> Path:
    """A tiny BERT whose head ignores the input (zero weights) and outputs ``bias``."""
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    from fedskip.models.loading import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else None,
    )
    cls = BertForTokenClassification if task == "ner" else BertForSequenceClassification
    model = cls(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    cfg = Config(task=task, max_length=max_length, stride=4)
    return RunDir(out).save_model(model, tokenizer, cfg=cfg)


NER_LABELS = ["O", "B-problem", "I-problem"]


@pytest.mark.parametrize(
    ("bias", "max_length", "expected"),
    [
        # every word B-problem: one entity per word, punctuation included
        (
            [0.0, 5.0, 0.0],
            128,
            [
                (0, 4),
                (4, 5),
                (6, 11),
                (11, 12),
                (13, 18),
                (19, 23),
                (24, 27),
                (28, 32),
                (33, 38),
                (39, 44),
                (45, 51),
            ],
        ),
        # every word I-problem: repaired to one entity per sentence
        ([0.0, 0.0, 5.0], 128, [(0, 12), (13, 51)]),
        # same with 8-token windows: long sentences are windowed, spans unchanged
        ([0.0, 0.0, 5.0], 8, [(0, 12), (13, 51)]),
    ],
)
def test_predict_entity_spans(
    tmp_path: Path, capsys: Any, bias: list[float], max_length: int, expected: list[tuple[int, int]]
) -> None:
    model = _tiny_bert_export(tmp_path, "ner", NER_LABELS, bias, max_length=max_length)
    text = "Pain, fever. Chest ache and mild cough since monday"
    assert main(["predict", "--model", str(model), "--text", text, "--json"]) == 0
    entities = json.loads(capsys.readouterr().out)["entities"]
    assert [(e["start"], e["end"]) for e in entities] == expected
    assert all(
        e["type"] == "problem" and e["text"] == text[e["start"] : e["end"]] for e in entities
    )
    p = math.exp(5) / (math.exp(5) + 2)
    assert all(e["score"] == pytest.approx(p, abs=1e-4) for e in entities)


def test_predict_classification_scores(tmp_path: Path, capsys: Any) -> None:
    model = _tiny_bert_export(tmp_path / "mc", "classification", ["a", "b", "c"], [0.0, 2.0, 0.0])
    note = tmp_path / "note.txt"
    note.write_text("discharge summary text")
    assert main(["predict", "--model", str(model), "--file", str(note), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predicted"] == ["b"]
    e2 = math.exp(2)
    assert [r["label"] for r in result["labels"]] == ["b", "a", "c"]
    assert result["labels"][0]["score"] == pytest.approx(e2 / (e2 + 2), abs=1e-6)
    multi = _tiny_bert_export(
        tmp_path / "ml", "classification", ["x", "y"], [1.0, -1.0], multi_label=True
    )
    assert main(["predict", "--model", str(multi), "--text", "some note"]) == 0
    text_out = capsys.readouterr().out
    assert "predicted: x" in text_out
    assert f"{1 / (1 + math.exp(-1)):.4f}" in text_out


def test_predict_bad_input(tmp_path: Path, capsys: Any) -> None:
    model = _tiny_bert_export(tmp_path, "ner", NER_LABELS, [1.0, 0.0, 0.0])
    assert main(["predict", "--model", str(model), "--text", "   "]) == 2
    assert "input text is empty" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), "--file", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), "--text", "no findings"]) == 0
    assert capsys.readouterr().out.strip() == "no entities found"


def test_evaluate_classification_export(tmp_path: Path, write_tree: Any, capsys: Any) -> None:
    model = _tiny_bert_export(tmp_path / "m", "classification", ["a", "b", "c"], [0.0, 3.0, 0.0])
    rows = [{"text": f"note {i}", "label": lab} for i, lab in enumerate("bbac")]
    data = write_tree({"notes.jsonl": "\n".join(json.dumps(r) for r in rows)})
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # always "b": accuracy 2/4; F1 b = 2/3 (P 1/2, R 1), a and c 0 -> macro 2/9
    assert got["accuracy"] == pytest.approx(0.5)
    assert got["macro_f1"] == pytest.approx(2 / 9)
    assert got["documents"] == 4
    bad = write_tree({"x.jsonl": json.dumps({"text": "t", "label": "d"})}, root="bad")
    assert main(["evaluate", "--model", str(model), "--data", str(bad)]) == 2
    assert "labels d are not in the model's labels (a, b, c)" in capsys.readouterr().err
    multi = write_tree({"x.jsonl": json.dumps({"text": "t", "labels": ["a"]})}, root="multi")
    assert main(["evaluate", "--model", str(model), "--data", str(multi)]) == 2
    assert "label kind differs from the model's (single-label)" in capsys.readouterr().err


def test_centralized_without_test_set(write_tree: Any, tmp_path: Path, capsys: Any) -> None:
    data = write_tree(i2b2_files("only", 2))
    sets = [
        f"data={data}",
        "model=llama-tiny",
        "device=cpu",
        "epochs=1",
        "max-length=32",
        "stride=8",
        "test-fraction=0",
        f"out={tmp_path / 'run'}",
    ]
    assert main(["centralized", "--set", *sets]) == 0
    out = capsys.readouterr().out
    assert "test f1 n/a (no test set)" in out and "no test data" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"] == {} and summary["data"]["test_documents"] == 0


def test_evaluate_icd9_on_the_models_codes(tmp_path: Path, write_tree: Any, capsys: Any) -> None:
    model = _tiny_bert_export(
        tmp_path / "m", "classification", ["4019", "4280"], [2.0, -2.0], multi_label=True
    )
    manifest = model / "fedskip.json"
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "config": {"label": "icd9"}})
    )
    notes = "ROW_ID,HADM_ID,CATEGORY,ISERROR,TEXT\n" + "".join(
        f'{i},{100 + i},Discharge summary,,"summary {i}"\n' for i in (1, 2, 3)
    )
    codes = "HADM_ID,ICD9_CODE\n101,4019\n101,9999\n102,4280\n103,9999\n"
    data = write_tree({"NOTEEVENTS.csv": notes, "DIAGNOSES_ICD.csv": codes})
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # gold [4019], [4280] (admission 103 has no model code: dropped); always predicts 4019
    assert got["dropped_documents"] == 1 and got["documents"] == 2
    assert got["micro_f1"] == pytest.approx(0.5)
    assert got["macro_f1"] == pytest.approx(1 / 3)
    assert got["auroc"] == pytest.approx(0.5)


def test_centralized_rejects_data_kept_at_sites(capsys: Any) -> None:
    assert main(["centralized", "--set", "data=sites", "labels=problem"]) == 2
    assert "centralized training needs the data here" in capsys.readouterr().err


def test_predict_refuses_a_note_above_the_size_limit(tmp_path: Path, capsys: Any) -> None:
    note = tmp_path / "note.txt"
    note.write_text("word " * 200_001)  # 1,000,005 characters on one line
    assert main(["predict", "--model", str(tmp_path), "--file", str(note)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {note}: a note of 1,000,005 characters; fedskip reads notes of up to "
        "1,000,000 (split it into several notes)\n"
    )


def test_centralized_closes_with_the_next_commands(trained: dict[str, Any]) -> None:
    out = trained["out"]
    assert trained["printed"].splitlines()[-3:] == [
        "next:",
        f"  report: {out / 'report.md'} (plots in {out}/plots; compare with other runs: "
        f"fedskip report {out} OTHER_RUN...)",
        f"  fedskip predict --model {out / 'model'} --text 'the note text'",
    ]


def report_row(report: str) -> dict[str, str]:
    """The first run's row of ``report.md``'s table, by column."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header, row = ([c.strip() for c in line.strip("|").split("|")] for line in lines[:2])
    return dict(zip(header, row, strict=True))


def test_centralized_leaves_its_report_with_the_numbers_of_its_summary(
    trained: dict[str, Any],
) -> None:
    """``report.md`` (what ``fedskip report OUT`` renders) and its plots in the run directory;
    the table's figures are summary.json's and metrics.jsonl's."""
    out = trained["out"]
    summary = json.loads((out / "summary.json").read_text())
    epochs = [row.scores["f1"] for row in RunDir(out).read_metrics()]
    report = (out / "report.md").read_text()
    row = report_row(report)
    assert (row["run"], row["method"], row["k"]) == ("`run`", "centralized", "2")
    assert row["final"] == f"{summary['final']['f1']:.3f}" == f"{epochs[-1]:.3f}"
    assert row["best"] == f"{max(epochs):.3f}"
    assert row["s"] == f"{summary['seconds']:.0f}"
    for plot in ("ner-metric-vs-round.png", "ner-metric-vs-mb.png"):
        assert (out / "plots" / plot).read_bytes().startswith(b"\x89PNG"), plot
        assert f"](plots/{plot})" in report


@pytest.mark.parametrize(
    ("sets", "viewers"),
    [
        ({"tracking": "tensorboard"}, ["tensorboard --logdir {out}/tensorboard"]),
        (
            {"tracking": "tensorboard,mlflow"},
            [
                "tensorboard --logdir {out}/tensorboard",
                "mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db",
            ],
        ),
        (
            {"tracking": "mlflow", "mlflow-uri": "http://127.0.0.1:5000"},
            ["open http://127.0.0.1:5000 (the MLflow server of config key mlflow-uri)"],
        ),
        (
            {"tracking": "mlflow", "skinny": True},
            [
                "mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db "
                '(after pip install "fedskip[mlflow]")'
            ],
        ),
    ],
    ids=["tensorboard", "both", "mlflow-server", "mlflow-skinny"],
)
def test_next_commands_name_the_tracking_viewers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sets: dict[str, Any], viewers: list[str]
) -> None:
    """No model exported (a local-only run): no predict line; the viewers of ``tracking``;
    ``mlflow ui`` needs the ``mlflow`` extra (the ``test`` extra's mlflow-skinny has no UI)."""
    import fedskip.tracking
    from fedskip.commands.common import next_commands

    sets = dict(sets)
    skinny = sets.pop("skinny", False)
    monkeypatch.setattr(fedskip.tracking, "full_mlflow", lambda: not skinny)
    cfg = Config.from_mapping(sets)
    out = tmp_path.resolve()
    assert next_commands(cfg, out).splitlines() == [
        "next:",
        f"  fedskip report {out}",
        *(f"  {line.format(out=out)}" for line in viewers),
    ]


def test_export_has_a_model_card_and_one_file_mode(trained: dict[str, Any]) -> None:
    """``README.md`` in Hugging Face's card layout, its fields read back (by fedskip and by
    huggingface_hub), and every file of the export with the same permission bits."""
    from huggingface_hub import ModelCard

    from fedskip.modelcard import read_card_metadata

    model = trained["out"] / "model"
    summary = json.loads((trained["out"] / "summary.json").read_text())
    final = summary["final"]
    meta = read_card_metadata(model)
    scores = meta.pop("model-index")[0]["results"][0]
    assert meta == {
        "library_name": "transformers",
        "pipeline_tag": "token-classification",
        "tags": ["fedskip", "clinical-nlp", "ner", "method-centralized"],
    }  # llama-tiny starts from random weights: no base_model
    assert scores["task"] == {"type": "token-classification"}
    assert scores["dataset"] == {"name": "data", "type": "data"}
    assert scores["metrics"] == [
        {"type": name, "value": final[name], "name": f"test {name}"}
        for name in ("f1", "precision", "recall")
    ]
    card = ModelCard.load(model / "README.md")
    assert card.data.library_name == "transformers" and card.data.tags == meta["tags"]
    text = card.text
    labels = json.loads((model / "fedskip.json").read_text())["labels"]
    assert f"- Labels (7): {', '.join(f'`{x}`' for x in labels)}" in text
    assert "- Base model: preset `llama-tiny`, random init (no pretrained weights)" in text
    assert "- Trained transformer blocks: [2, 3] of 4 (the others kept the base weights)" in text
    assert "- Sites (2): site-a, site-b" in text
    assert f"- Data: `{trained['data']}` (data-format auto)" in text
    assert "- centralized: 2 epochs" in text
    assert f"| test | f1 | {final['f1']:.4f} | last epoch |" in text
    assert "No differential privacy: the weights may memorise training text" in text
    assert "## Intended use and limits" in text and "not a medical device" in text
    modes = {p.name: p.stat().st_mode & 0o777 for p in model.iterdir()}
    assert set(modes) >= {"model.safetensors", "config.json", "README.md", "fedskip.json"}
    assert len(set(modes.values())) == 1, modes
