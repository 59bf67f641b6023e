"""model-init=random: a real preset's architecture without its weights, seeded and labelled.

The 1.2 B-parameter llama-3.2-1b is never built here: ``shrunk_llama`` replaces the preset's
config by the same LLaMA 3.2 architecture (rope llama3, tied embeddings, 128,256-token vocabulary,
GQA) at hidden 64 and 2 blocks, so the code path is the real preset's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.cli import main
from fedskip.config import MODEL_INITS, Config
from fedskip.errors import ConfigError
from fedskip.modelcard import read_card_metadata
from fedskip.models import presets
from fedskip.models.loading import load_model
from fedskip.models.presets import RANDOM_INIT_LABEL, llama_3_2_1b_config, model_init
from tests.test_centralized_cli import i2b2_files

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]


def shrunk_llama_3_2_1b() -> Any:
    """Llama-3.2-1B's config with hidden 64, 2 blocks (vocabulary, rope and ties unchanged)."""
    config = llama_3_2_1b_config()
    shrink = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    shrink |= dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    for key, value in shrink.items():
        setattr(config, key, value)
    return config


@pytest.fixture
def shrunk_llama(monkeypatch: pytest.MonkeyPatch) -> None:
    """``llama-3.2-1b`` built from :func:`shrunk_llama_3_2_1b`; no weights folder set."""
    preset = dataclasses.replace(presets.PRESETS["llama-3.2-1b"], build_config=shrunk_llama_3_2_1b)
    monkeypatch.setitem(presets.PRESETS, "llama-3.2-1b", preset)
    monkeypatch.delenv(presets.LLAMA_3_2_1B_ENV, raising=False)


def test_model_inits_match_the_config_choices() -> None:
    assert presets.MODEL_INITS == MODEL_INITS


def test_random_init_is_seeded_and_the_same_for_every_site(shrunk_llama: None) -> None:
    first, tokenizer = load_model("llama-3.2-1b", task="ner", labels=LABELS, init="random", seed=7)
    again, _ = load_model("llama-3.2-1b", task="ner", labels=LABELS, init="random", seed=7)
    other, _ = load_model("llama-3.2-1b", task="ner", labels=LABELS, init="random", seed=8)
    assert first.config.vocab_size == 128256 and first.config.num_hidden_layers == 2
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    weight = "model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    # no weights folder: the offline stand-in tokenizer, whose ids all have an embedding row
    assert len(tokenizer) == 30522 < first.config.vocab_size
    assert tokenizer.pad_token is not None


def test_random_init_warns(shrunk_llama: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="fedskip.models"):
        load_model("llama-3.2-1b", task="ner", labels=LABELS, init="random", seed=3)
    assert f"llama-3.2-1b starts from random weights (seed 3). {RANDOM_INIT_LABEL}" in caplog.text


def test_pretrained_without_weights_still_asks_for_them(shrunk_llama: None) -> None:
    from fedskip.errors import ModelError

    with pytest.raises(ModelError, match=r"set FEDSKIP_LLAMA_3_2_1B"):
        load_model("llama-3.2-1b", task="ner", labels=LABELS)


@pytest.mark.parametrize(
    ("model", "init", "expected"),
    [
        ("llama-3.2-1b", "random", "random"),
        ("llama-3.2-1b", "pretrained", "pretrained"),
        ("minilm", "pretrained", "pretrained"),
        ("llama-tiny", "pretrained", "random"),  # a preset without published weights
        ("/some/folder", "random", "random"),
    ],
)
def test_model_init_of_a_run(model: str, init: str, expected: str) -> None:
    assert model_init(model, init) == expected


def test_random_init_with_a_model_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model-init=random reads no weights"):
        Config(model="llama-3.2-1b", model_init="random", model_path="/w")


def test_random_run_is_labelled_in_console_summary_and_card(
    shrunk_llama: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for rel, text in {**i2b2_files("site-a", 4), **i2b2_files("site-b", 4)}.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(text)
    out = tmp_path / "run"
    sets = [f"data={data}", "model=llama-3.2-1b", "model-init=random", "device=cpu"]
    sets += ["epochs=1", "batch-size=4", "layers=1", "max-length=24", "stride=8", f"out={out}"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["centralized", "--set", *sets, "--quiet"]) == 0
    assert RANDOM_INIT_LABEL in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["model"], summary["model_init"]) == ("llama-3.2-1b", "random")
    card = (out / "model" / "README.md").read_text()
    assert f"**{RANDOM_INIT_LABEL}**" in card
    assert "base_model" not in read_card_metadata(out / "model")
    assert "meta-llama" not in card


def test_federated_summary_says_random() -> None:
    from fedskip.federation.round_rows import summarize

    cfg = Config(model="llama-3.2-1b", model_init="random")
    summary = summarize(
        [], cfg=cfg, primary="f1", full_model_bytes=4, exchanged_parameters=1, seconds=0
    )
    assert summary["model_init"] == "random"
