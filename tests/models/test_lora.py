"""LoRA inside the selected blocks: only adapters (+ head, + final norm) train and travel; base
weights stay bit-identical; the count matches ``fedskip comm``; the export is a plain model."""

from __future__ import annotations

import json
import re

import pytest
import torch

from fedskip.cli import main
from fedskip.errors import ConfigError
from fedskip.models.layers import discover_layers
from fedskip.models.loading import load_model
from fedskip.models.lora import (
    PEFT_PREFIX,
    apply_lora_to_selected,
    lora_target_modules,
    set_lora_trainable,
)
from tests.models.tiny_models import random_batch

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]
TINY_HEAD = 64 * 3 + 3
TINY_NORM = 64
# llama-tiny, rank 4: q,o 64->64; k,v 64->32; gate,up 64->128; down 128->64
TINY_LORA_R4 = 4 * (2 * 128 + 2 * 96 + 3 * 192)
TINY_LORA_R4_B_ONLY = 4 * (2 * 64 + 2 * 32 + 2 * 128 + 64)
# MiniLM, rank 4: query,key,value,attention.output.dense 384->384; intermediate 384->1536; output 1536->384
MINILM_LORA_R4 = 4 * (4 * 768 + 2 * 1920)
MINILM_HEAD = 384 * 3 + 3

LLAMA_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
BERT_LINEARS = {
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
}


def _load(name: str) -> tuple[torch.nn.Module, object]:
    model = load_model(name, task="ner", labels=LABELS, device="cpu")[0]
    return model, discover_layers(model)


@pytest.fixture(scope="module")
def minilm() -> tuple[torch.nn.Module, object]:
    return _load("minilm")


def _numel(model: torch.nn.Module, names: list[str]) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names)


def _block_of_adapter(stack: object, name: str) -> int | None:
    return stack.block_of(name[len(PEFT_PREFIX) :])  # type: ignore[attr-defined]


def test_auto_targets_are_attention_and_mlp_linears(minilm) -> None:
    model, stack = _load("llama-tiny")
    names = lora_target_modules(model, stack, [1])
    assert {n.removeprefix("model.layers.1.").split(".")[-1] for n in names} == LLAMA_LINEARS
    bert, bert_stack = minilm
    names = lora_target_modules(bert, bert_stack, [5])
    assert {n.removeprefix("bert.encoder.layer.5.") for n in names} == BERT_LINEARS


@pytest.mark.parametrize(
    ("selected", "freeze_a", "final_norm", "expected"),
    [
        ([3], False, True, TINY_LORA_R4 + TINY_HEAD + TINY_NORM),
        ([3], False, False, TINY_LORA_R4 + TINY_HEAD),
        ([2, 3], True, True, 2 * TINY_LORA_R4_B_ONLY + TINY_HEAD + TINY_NORM),
        ([0, 2], False, True, 2 * TINY_LORA_R4 + TINY_HEAD),  # top block not selected: no norm
        ([0, 1, 2, 3], False, True, 4 * TINY_LORA_R4 + TINY_HEAD + TINY_NORM),  # method=lora
    ],
)
def test_llama_tiny_trainable_names_and_counts(selected, freeze_a, final_norm, expected) -> None:
    model, stack = _load("llama-tiny")
    wrapped, names = apply_lora_to_selected(
        model, stack, selected, rank=4, alpha=8, freeze_a=freeze_a, train_final_norm=final_norm
    )
    trainable = sorted(n for n, p in wrapped.named_parameters() if p.requires_grad)
    assert names == trainable and _numel(wrapped, names) == expected
    adapters = [n for n, _ in wrapped.named_parameters() if ".lora_" in n]
    assert {_block_of_adapter(stack, n) for n in adapters} == set(selected)
    for name in names:  # adapters, the head copy or the final norm; never a base weight
        assert (
            ".lora_B." in name
            or (".lora_A." in name and not freeze_a)
            or (".modules_to_save." in name or name == PEFT_PREFIX + "model.norm.weight")
        ), name


@pytest.mark.parametrize(("model_name", "k"), [("llama-tiny", 2), ("minilm", 2)])
@pytest.mark.parametrize("freeze_a", [False, True])
def test_comm_report_matches_the_real_trainable_count(
    capsys, minilm, model_name, k, freeze_a
) -> None:
    model, stack = minilm if model_name == "minilm" else _load(model_name)
    n = stack.num_blocks  # type: ignore[attr-defined]
    flags = ["--lora-freeze-a"] if freeze_a else []
    args = ["comm", "--model", model_name, "--layers", str(k), "--lora-rank", "4", *flags]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    import copy

    wrapped, names = apply_lora_to_selected(
        copy.deepcopy(model), stack, list(range(n - k, n)), rank=4, alpha=8, freeze_a=freeze_a
    )
    assert report["trainable_params"] == _numel(wrapped, names)
    if model_name == "minilm" and not freeze_a:
        assert report["trainable_params"] == 2 * MINILM_LORA_R4 + MINILM_HEAD == 56_451


def _train(model: torch.nn.Module, vocab: int, steps: int = 3) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    for step in range(steps):
        loss = model(**random_batch(vocab, seed=step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("model_name", ["llama-tiny", "minilm"])
def test_training_changes_only_adapters_in_selected_blocks(minilm, model_name) -> None:
    import copy

    model, stack = (
        (copy.deepcopy(minilm[0]), minilm[1]) if model_name == "minilm" else _load(model_name)
    )
    base = {k: v.clone() for k, v in model.state_dict().items()}
    selected = [1, 3] if model_name == "llama-tiny" else [4]
    wrapped, names = apply_lora_to_selected(model, stack, selected, rank=4, alpha=8)
    before = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    _train(wrapped, vocab=1000)
    after = dict(wrapped.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and changed <= set(names)
    lora_b = [n for n in names if ".lora_B." in n]
    assert lora_b and all(n in changed for n in lora_b)  # every B left zero
    assert {_block_of_adapter(stack, n) for n in changed if ".lora_" in n} == set(selected)
    assert any(".modules_to_save." in n for n in changed)
    # every other original weight is bit-identical (peft keeps them under their base_layer name)
    for key, value in wrapped.base_model.model.state_dict().items():
        if ".lora_" in key or ".modules_to_save." in key or PEFT_PREFIX + key in names:
            continue
        plain = key.replace(".base_layer.", ".").replace(".original_module.", ".")
        assert torch.equal(value, base[plain]), key


def test_freeze_a_gives_every_client_the_same_a_and_trains_only_b() -> None:
    states = []
    for noise in (0, 123):
        torch.manual_seed(noise)  # the global RNG must not matter
        model, stack = _load("llama-tiny")
        wrapped, names = apply_lora_to_selected(
            model, stack, [3], rank=4, alpha=8, freeze_a=True, seed=7
        )
        assert not any(".lora_A." in n for n in names)
        states.append(
            {n: p.detach().clone() for n, p in wrapped.named_parameters() if ".lora_A." in n}
        )
        before = dict(states[-1])
        _train(wrapped, vocab=1000, steps=2)
        assert all(torch.equal(before[n], p) for n, p in wrapped.named_parameters() if n in before)
    assert states[0].keys() == states[1].keys() and states[0]
    assert all(torch.equal(states[0][n], states[1][n]) for n in states[0])
    assert all(states[0][n].abs().sum() > 0 for n in states[0])


def test_reapplying_flags_is_stable() -> None:
    model, stack = _load("llama-tiny")
    wrapped, names = apply_lora_to_selected(model, stack, [3], rank=2, alpha=4)
    for param in wrapped.parameters():
        param.requires_grad_(True)
    assert set_lora_trainable(wrapped, stack, [3]) == names


def test_export_merges_adapters_into_a_plain_model(tmp_path) -> None:
    from transformers import AutoModelForTokenClassification

    from fedskip.records.rundir import export_ready

    model, stack = _load("llama-tiny")
    wrapped, _ = apply_lora_to_selected(model, stack, [2, 3], rank=4, alpha=8)
    _train(wrapped, vocab=1000, steps=2)
    wrapped.eval()
    batch = random_batch(1000, seed=9)
    expected = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    plain = export_ready(wrapped)
    assert not any("lora" in n or "modules_to_save" in n for n, _ in plain.named_parameters())
    plain.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "config key 'lora-rank': 0 must be >= 1 for LoRA"),
        ({"alpha": 0.0}, "config key 'lora-alpha': 0.0 must be > 0"),
        (
            {"targets": "q_proj,qkv"},
            "config key 'lora-targets': 'qkv' matches no linear layer of blocks [3]; "
            "linear layers there: mlp.down_proj, mlp.gate_proj, mlp.up_proj, self_attn.k_proj",
        ),
        ({"targets": " , "}, "config key 'lora-targets': give module names"),
        ({"selected": [4]}, "block(s) [4] out of range 0..3"),
        ({"selected": []}, "at least one block must be selected"),
    ],
)
def test_bad_settings(kwargs, message) -> None:
    model, stack = _load("llama-tiny")
    args = {"selected": [3], "rank": 4, "alpha": 8.0, **kwargs}
    selected = args.pop("selected")
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_lora_to_selected(model, stack, selected, **args)


def test_explicit_targets_restrict_the_adapters() -> None:
    model, stack = _load("llama-tiny")
    wrapped, names = apply_lora_to_selected(
        model, stack, [3], rank=4, alpha=8, targets="q_proj, self_attn.v_proj"
    )
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if ".lora_" in n}
    assert adapted == {"q_proj", "v_proj"}
    assert _numel(wrapped, names) == 4 * (128 + 96) + TINY_HEAD + TINY_NORM


def test_sequence_classification_head_with_pooler_is_trained_and_exported() -> None:
    from fedskip.records.rundir import export_ready
    from tests.models.tiny_models import build_tiny

    model = build_tiny("bert", kind="seq", num_labels=2)
    stack = discover_layers(model)
    assert stack.head_prefixes == ["classifier.", "bert.pooler."]
    wrapped, names = apply_lora_to_selected(model, stack, [2], rank=2, alpha=4)
    heads = sorted(n for n in names if ".modules_to_save." in n)
    assert heads == [
        "base_model.model.bert.pooler.modules_to_save.default.dense.bias",
        "base_model.model.bert.pooler.modules_to_save.default.dense.weight",
        "base_model.model.classifier.modules_to_save.default.bias",
        "base_model.model.classifier.modules_to_save.default.weight",
    ]
    # pooler 32->32, classifier 32->2, rank-2 adapters: q,k,v,o 32->32, intermediate 32->64, output 64->32
    assert _numel(wrapped, names) == (32 * 32 + 32) + (32 * 2 + 2) + 2 * (4 * 64 + 2 * 96) == 2018
    plain = export_ready(wrapped)
    fresh = build_tiny("bert", kind="seq", num_labels=2)  # peft changed `model` in place
    assert {n for n, _ in plain.named_parameters()} == {n for n, _ in fresh.named_parameters()}
