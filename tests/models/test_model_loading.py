"""load_model / build_meta_model / presets: heads, labels, pad tokens, dtypes, devices, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedskip.errors import ConfigError, ModelError
from fedskip.models.layers import discover_layers
from fedskip.models.loading import build_meta_model, load_model, resolve_device
from fedskip.models.presets import llama_tiny_tokenizer

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]


def test_minilm_token_classifier_loads_offline_in_train_mode() -> None:
    model, tokenizer = load_model("minilm", task="ner", labels=LABELS)
    assert type(model).__name__ == "BertForTokenClassification"
    assert model.training
    assert model.config.id2label == {0: "O", 1: "B-PROBLEM", 2: "I-PROBLEM"}
    assert model.config.label2id == {"O": 0, "B-PROBLEM": 1, "I-PROBLEM": 2}
    assert model.classifier.out_features == 3
    assert next(model.parameters()).device.type == resolve_device("auto").type
    assert tokenizer.pad_token == "[PAD]" and model.config.pad_token_id == 0
    # pretrained body: the first query weight is the checkpoint's, not a fresh init
    assert model.bert.encoder.layer[0].attention.self.query.weight.abs().sum().item() > 10


@pytest.mark.parametrize(
    ("multi_label", "problem_type"),
    [(False, "single_label_classification"), (True, "multi_label_classification")],
)
def test_minilm_sequence_classifier_problem_type(multi_label: bool, problem_type: str) -> None:
    model, _ = load_model(
        "minilm", task="classification", labels=["cardio", "neuro"], multi_label=multi_label
    )
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.problem_type == problem_type
    assert discover_layers(model).head_prefixes == ["classifier.", "bert.pooler."]


def test_llama_tiny_pad_token_uses_existing_vocab_entry() -> None:
    raw = llama_tiny_tokenizer()
    assert raw.pad_token is None  # like LLaMA: no pad token by default
    model, tokenizer = load_model("llama-tiny", task="ner", labels=LABELS)
    assert tokenizer.pad_token == "[PAD]" and tokenizer.pad_token_id == 0
    assert model.config.pad_token_id == 0
    assert tokenizer.padding_side == "right"
    assert len(tokenizer) == model.config.vocab_size == 30522  # no resize needed
    assert model.model.embed_tokens.weight.shape == (30522, 64)
    batch = tokenizer(["chest pain", "no acute distress today"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, -1].item() == 0  # right-padded with [PAD]
    out = model(**batch, labels=torch.zeros_like(batch["input_ids"]))
    assert torch.isfinite(out.loss)


def test_llama_tiny_sequence_classifier_finds_last_real_token() -> None:
    model, tokenizer = load_model("llama-tiny", task="classification", labels=["a", "b"])
    model.eval()
    batch = tokenizer(["chest pain", "no acute distress today"], padding=True, return_tensors="pt")
    alone = tokenizer(["chest pain"], return_tensors="pt")
    with torch.no_grad():
        padded = model(**batch).logits[0]
        single = model(**alone).logits[0]
    torch.testing.assert_close(padded, single, rtol=1e-4, atol=1e-5)


def test_llama_tiny_init_is_deterministic_and_seeded() -> None:
    a, _ = load_model("llama-tiny", task="ner", labels=LABELS)
    b, _ = load_model("llama-tiny", task="ner", labels=LABELS)
    c, _ = load_model("llama-tiny", task="ner", labels=LABELS, seed=1)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.score.weight, c.score.weight)


def test_bf16_weights() -> None:
    model, _ = load_model("llama-tiny", task="ner", labels=LABELS, dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _save_llama_tiny(folder: Path) -> torch.nn.Module:
    model, tokenizer = load_model("llama-tiny", task="ner", labels=LABELS)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_local_folder_loads_with_a_new_label_set(tmp_path: Path) -> None:
    model = _save_llama_tiny(tmp_path / "tiny")
    again, _ = load_model(
        str(tmp_path / "tiny"), task="ner", labels=["O", "B-X", "I-X", "B-Y", "I-Y"]
    )
    assert again.score.out_features == 5
    body = again.model.layers[2].mlp.up_proj.weight
    assert torch.equal(body, model.model.layers[2].mlp.up_proj.weight)


@pytest.mark.parametrize("damage", ["delete", "reshape"])
def test_checkpoint_with_bad_block_weights_fails(tmp_path: Path, damage: str) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "tiny"
    _save_llama_tiny(folder)
    weights = load_file(folder / "model.safetensors")
    key = "model.layers.1.mlp.up_proj.weight"
    if damage == "delete":
        del weights[key]
    else:
        weights[key] = torch.zeros(3, 3)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ModelError, match=r"\(or has other shapes\) for model\.layers\.1\.mlp\.up_proj"
    ):
        load_model(str(folder), task="ner", labels=LABELS)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"task": "qa", "labels": LABELS},
            ConfigError,
            r"'task': 'qa' is not one of ner, classification",
        ),
        (
            {"task": "ner", "labels": LABELS, "dtype": "fp16"},
            ConfigError,
            r"'dtype': 'fp16' is not one of fp32, bf16",
        ),
        ({"task": "ner", "labels": []}, ConfigError, r"at least one label"),
        ({"task": "ner", "labels": ["O", "O"]}, ConfigError, r"duplicate label names O"),
        ({"task": "classification", "labels": ["x"]}, ConfigError, r"needs >= 2 labels"),
        ({"task": "ner", "labels": LABELS, "device": "tpu"}, ConfigError, r"'device': 'tpu'"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_model("llama-tiny", **kwargs)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("/no/such/folder", r"model path /no/such/folder: folder not found"),
        (
            "someorg/not-cached-model",
            r"not a preset .*huggingface-cli download someorg/not-cached-model",
        ),
        ("llama-3.2-1b", r"set FEDSKIP_LLAMA_3_2_1B=/path/to/Llama-3.2-1B"),
    ],
)
def test_unavailable_models_give_a_hint(name: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        load_model(name, task="ner", labels=LABELS)


def test_llama_env_folder_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDSKIP_LLAMA_3_2_1B", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match=r"FEDSKIP_LLAMA_3_2_1B=.*missing: folder not found"):
        load_model("llama-3.2-1b", task="ner", labels=LABELS)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"expected a folder"):
        load_model(str(path), task="ner", labels=LABELS)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"no CUDA device"):
            resolve_device("cuda")


def test_meta_model_of_the_paper_architecture() -> None:
    model = build_meta_model("llama-3.2-1b")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (
        128256,
        2048,
        16,
        8192,
    )
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.tie_word_embeddings) == (
        32,
        8,
        True,
    )
    assert cfg.rope_parameters["rope_type"] == "llama3" and cfg.rope_parameters["factor"] == 32.0
    head = 2048 * 3 + 3
    assert sum(p.numel() for p in model.parameters()) - head == 1_235_814_400


def test_meta_model_for_classification_and_bad_labels() -> None:
    model = build_meta_model("minilm", task="classification", num_labels=4)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.classifier.out_features == 4
    with pytest.raises(ConfigError, match=r"num-labels: 0"):
        build_meta_model("minilm", num_labels=0)


def test_architecture_without_a_task_class(tmp_path: Path) -> None:
    from transformers import CLIPConfig

    CLIPConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"\(clip\) has no token-classification class"):
        build_meta_model(str(tmp_path))
