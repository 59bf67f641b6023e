"""Tiny random models and inputs shared by the model and selection tests."""

from __future__ import annotations

from typing import Any

import torch

NER_LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]


def tiny_config(family: str) -> Any:
    """A 3-block random config of ``family`` (hidden 32, vocab 100), built from its Config class."""
    import transformers as tf

    common: dict[str, Any] = dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=100,
    )
    decoder = dict(common, num_key_value_heads=2)
    configs = {
        "bert": lambda: tf.BertConfig(**common),
        "roberta": lambda: tf.RobertaConfig(**common),
        "deberta-v2": lambda: tf.DebertaV2Config(
            **common,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm",
        ),
        "llama": lambda: tf.LlamaConfig(**decoder),
        "mistral": lambda: tf.MistralConfig(**decoder),
        "qwen2": lambda: tf.Qwen2Config(**decoder),
        "gemma": lambda: tf.GemmaConfig(**decoder, head_dim=8),
    }
    return configs[family]()


def build_tiny(family: str, kind: str = "token", num_labels: int = 3, seed: int = 0) -> Any:
    """A tiny random ``family`` model with a token (``kind="token"``) or sequence head."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    config = tiny_config(family)
    config.num_labels = num_labels
    auto = (
        AutoModelForTokenClassification if kind == "token" else AutoModelForSequenceClassification
    )
    torch.manual_seed(seed)
    return auto.from_config(config)


def random_batch(
    vocab: int, *, batch: int = 2, length: int = 6, num_labels: int = 3, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Token-classification inputs with labels (fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, vocab, (batch, length), generator=g),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "labels": torch.randint(0, num_labels, (batch, length), generator=g),
    }
