"""A user's own weights: model-path / FEDSKIP_LLAMA_3_2_1B naming a save_pretrained folder.

The checkpoints are tiny random LLaMAs (hidden 16) saved locally; each broken folder is its own
case and must give one line naming the folder (exit status 2 through the CLI).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.errors import ModelError
from fedskip.models.loading import load_model
from fedskip.models.presets import LLAMA_3_2_1B_ENV, llama_tiny_tokenizer

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]


def save_tiny_llama(folder: Path, *, tokenizer: Any = None, shard_size: str = "") -> Any:
    """A random LlamaForCausalLM (hidden 16, 2 blocks) and a tokenizer, saved with
    ``save_pretrained`` (sharded with ``shard_size``); returns the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or llama_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
    tokenizer.save_pretrained(folder)
    return model


def word_tokenizer(**special: str) -> Any:
    """A word-level fast tokenizer without a pad token (and only the ``special`` tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<unk>", "patient", "denies", "chest", "pain"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("weights") / "llama"
    return folder, save_tiny_llama(folder)


def test_model_path_loads_the_users_weights(checkpoint: tuple[Path, Any]) -> None:
    folder, saved = checkpoint
    model, tokenizer = load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))
    assert model.config.hidden_size == 16  # the folder's architecture, not the preset's
    weight = model.model.layers[1].mlp.up_proj.weight
    assert torch.equal(weight, saved.model.layers[1].mlp.up_proj.weight)
    assert tokenizer.pad_token == "[PAD]"


def test_the_environment_variable_names_the_folder(
    checkpoint: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, saved = checkpoint
    monkeypatch.setenv(LLAMA_3_2_1B_ENV, str(folder))
    model, _ = load_model("llama-3.2-1b", task="ner", labels=LABELS)
    assert torch.equal(model.model.embed_tokens.weight, saved.model.embed_tokens.weight)


def test_a_sharded_checkpoint_loads(tmp_path: Path) -> None:
    saved = save_tiny_llama(tmp_path / "sharded", shard_size="200KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    model, _ = load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(tmp_path / "sharded"))
    assert torch.equal(model.model.norm.weight, saved.model.norm.weight)


def test_missing_shard(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    save_tiny_llama(folder, shard_size="200KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(ModelError) as err:
        load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))
    assert str(err.value) == (
        f"model path {folder}: checkpoint is missing 1 shard(s) listed in its index: "
        f"{shards[1].name}; copy the whole folder again"
    )


def test_not_a_llama_checkpoint(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(folder)
    with pytest.raises(ModelError) as err:
        load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))
    assert str(err.value) == (
        f"model path {folder}: not a LLaMA checkpoint (config.json has model_type 'bert', "
        "expected 'llama')"
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-config", "no config.json; not a save_pretrained folder"),
        ("no-weights", "no weights (model.safetensors or pytorch_model.bin, or a sharded index)"),
        ("bad-config", "config.json is not readable JSON"),
    ],
)
def test_broken_folders(tmp_path: Path, damage: str, message: str) -> None:
    folder = tmp_path / "llama"
    save_tiny_llama(folder)
    if damage == "no-config":
        (folder / "config.json").unlink()
    elif damage == "no-weights":
        (folder / "model.safetensors").unlink()
    else:
        (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="^" + re.escape(f"model path {folder}: {message}")):
        load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))


def test_tokenizer_without_pad_pads_with_eos_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "llama"
    save_tiny_llama(folder, tokenizer=word_tokenizer(bos_token="<s>", eos_token="</s>"))
    with caplog.at_level("WARNING", logger="fedskip.models"):
        model, tokenizer = load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))
    assert tokenizer.pad_token == "</s>" and model.config.pad_token_id == 1
    assert (
        f"tokenizer of {folder} has no padding token: padding with its eos token '</s>'"
        in caplog.text
    )


def test_tokenizer_without_pad_unk_or_eos_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "llama"
    save_tiny_llama(folder, tokenizer=word_tokenizer())
    with pytest.raises(ModelError, match=rf"^tokenizer of {folder} has no pad, unk or eos token"):
        load_model("llama-3.2-1b", task="ner", labels=LABELS, path=str(folder))


def test_cli_exit_2_names_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedskip.cli import main

    folder = tmp_path / "llama"
    save_tiny_llama(folder, shard_size="200KB")
    next(iter(sorted(folder.glob("model-*.safetensors")))).unlink()
    sets = ["model=llama-3.2-1b", f"model-path={folder}", "device=cpu", f"out={tmp_path / 'r'}"]
    code = main(["centralized", "--set", *sets, "synth-docs=4", "synth-sites=2", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"model path {folder}: checkpoint is missing 1 shard(s)" in err


def test_model_path_is_a_run_config_key(checkpoint: tuple[Path, Any]) -> None:
    folder, _ = checkpoint
    cfg = Config(model="llama-3.2-1b", model_path=str(folder))
    assert json.loads(json.dumps(cfg.to_run_config()))["model-path"] == str(folder)
