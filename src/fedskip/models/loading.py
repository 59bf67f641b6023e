"""Load any Hugging Face model (a preset, a hub id or a local folder) with a fresh task head.

``task="ner"`` gives ``AutoModelForTokenClassification``; ``task="classification"`` gives
``AutoModelForSequenceClassification`` with ``problem_type`` single- or multi-label. The label
names are stored in the model config (``id2label`` / ``label2id``) so a saved model describes
itself. Decoder tokenizers without a pad token (LLaMA, Mistral) get an existing token as pad
(no new embedding rows) and right padding; ``config.pad_token_id`` follows the tokenizer.

Where the weights come from: ``path`` (config key ``model-path``) or a preset's environment
variable names a local ``save_pretrained`` folder, checked first
(:mod:`fedskip.models.checkpoint`: a preset's family, missing shards); ``init="random"``
(``model-init=random``) reads no weights at all and initialises the architecture from ``seed``,
so every site starts from the same random weights; it is a systems check and says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from fedskip.errors import ConfigError, ModelError
from fedskip.models.checkpoint import check_checkpoint_folder
from fedskip.models.presets import PRESETS, RANDOM_INIT_LABEL, Preset, get_preset

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TASKS = ("ner", "classification")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<pad>", "[PAD]", "<|pad|>")
"""Existing vocabulary entries preferred as pad token, before falling back to unk, then eos."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    key = name.strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"config key 'device': {name!r} requested but no CUDA device is available; use auto or cpu"
            )
        return torch.device(key)
    if key == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"config key 'device': {name!r} is not one of auto, cpu, cuda")


def resolve_dtype(name: str) -> torch.dtype:
    """``fp32`` / ``bf16`` → torch dtype."""
    if name not in DTYPES:
        raise ConfigError(f"config key 'dtype': {name!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _auto_class(task: str) -> Any:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    if task == "ner":
        return AutoModelForTokenClassification
    if task == "classification":
        return AutoModelForSequenceClassification
    raise ConfigError(f"config key 'task': {task!r} is not one of {', '.join(TASKS)}")


def _head_settings(task: str, labels: Sequence[str], multi_label: bool) -> dict[str, Any]:
    names = [str(label) for label in labels]
    if not names:
        raise ConfigError("labels: at least one label name is required to build the task head")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"labels: duplicate label names {', '.join(dupes)}")
    settings: dict[str, Any] = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }
    if task == "classification":
        if not multi_label and len(names) < 2:
            raise ConfigError(f"labels: single-label classification needs >= 2 labels, got {names}")
        settings["problem_type"] = (
            "multi_label_classification" if multi_label else "single_label_classification"
        )
    return settings


def _offline_hint(name: str) -> str:
    preset = get_preset(name)
    if preset is not None and preset.offline_hint:
        return f"model '{name}': weights or tokenizer not found; {preset.offline_hint}"
    names = ", ".join(PRESETS)
    return (
        f"model '{name}' is not a preset ({names}), not an existing local folder, and could not be "
        "loaded from the Hugging Face cache or hub; download it first (huggingface-cli download "
        f"{name}) or pass a local folder"
    )


def _user_folder(preset: Preset | None, path: str) -> str:
    """The local folder of the user's own weights: ``path``, else the preset's environment
    variable when set ("" = none)."""
    if path.strip():
        return path.strip()
    if preset is not None and preset.env_var and os.environ.get(preset.env_var, "").strip():
        return str(preset.weights_source())  # the preset names its variable when not a folder
    return ""


def _source(
    name: str, *, init: str = "pretrained", path: str = "", weights: bool = True
) -> tuple[str | None, PretrainedConfig | None]:
    """(weights folder / hub id or None for random init, preset config or None); with
    ``weights=False`` only the config is needed, so a local folder is not checked for weights."""
    preset = get_preset(name)
    if preset is not None and init == "random":
        return None, preset.build_config()
    folder = _user_folder(preset, path)
    if folder:
        family = preset.build_config().model_type if preset is not None else ""
        return str(check_checkpoint_folder(folder, model_type=family)), None
    if preset is not None:
        return preset.weights_source(), preset.build_config()
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(f"model path {name}: expected a folder with config.json, got a file")
        return (str(check_checkpoint_folder(local)) if weights else str(local)), None
    if name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1:
        raise ModelError(f"model path {name}: folder not found")
    return name, None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the load report and progress bars (a missing head is expected, checked by us)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_config(
    name: str, source: str | None, preset_config: PretrainedConfig | None
) -> PretrainedConfig:
    if preset_config is not None:
        return preset_config
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(source or name)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{_offline_hint(name)} ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _instantiate(
    name: str,
    task: str,
    config: PretrainedConfig,
    source: str | None,
    dtype: torch.dtype,
    seed: int,
) -> PreTrainedModel:
    auto = _auto_class(task)
    # The fresh head (and llama-tiny's body) is seeded: every client starts from the same weights.
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        if source is None:
            return _from_config(name, task, auto, config, dtype=dtype)
        try:
            # A saved fedskip model with another label set has a head of another size: take a
            # fresh head then; a mismatch anywhere else is caught by _check_missing.
            model, info = auto.from_pretrained(
                source,
                config=config,
                dtype=dtype,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"{_offline_hint(name)} ({_first_line(exc)})") from None
        except RuntimeError as exc:
            raise ModelError(
                f"model '{name}': weights do not fit the architecture ({_first_line(exc)})"
            ) from None
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    _check_missing(name, model, [*info.get("missing_keys", []), *mismatched])
    return model


def _from_config(name: str, task: str, auto: Any, config: PretrainedConfig, **kwargs: Any) -> Any:
    """``auto.from_config`` with an unsupported architecture reported as a ModelError."""
    try:
        return auto.from_config(config, **kwargs)
    except ValueError as exc:
        kind = "token" if task == "ner" else "sequence"
        raise ModelError(
            f"model '{name}' ({getattr(config, 'model_type', '?')}) has no {kind}-classification "
            f"class in transformers ({_first_line(exc)})"
        ) from None


def _check_missing(name: str, model: PreTrainedModel, missing: Sequence[str]) -> None:
    """Only the task head may be missing (or resized) in a checkpoint; random blocks would be
    silent garbage."""
    from fedskip.models.layers import discover_layers

    stack = discover_layers(model)
    body = sorted(k for k in missing if not stack.is_head(k))
    if body:
        shown = ", ".join(body[:3]) + (f" (+{len(body) - 3} more)" if len(body) > 3 else "")
        raise ModelError(
            f"model '{name}': checkpoint lacks weights (or has other shapes) for {shown}; is it the right model?"
        )


def prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig, *, source: str = ""
) -> None:
    """Give ``tokenizer`` a pad token from its own vocabulary, right padding, and sync ``config``.

    A tokenizer without one pads with a reserved pad entry of its vocabulary
    (:data:`PAD_CANDIDATES`), else its unk token, else its eos token, with a warning for the
    last two: no embedding row is added (so the weights keep the checkpoint's shapes on every
    site), and which id pads does not matter, since padded positions are masked and unlabelled.
    A tokenizer with none of these is refused (``source``: its folder, named in the messages).
    """
    if tokenizer.pad_token is None:
        vocab = tokenizer.get_vocab()
        choice = next((t for t in PAD_CANDIDATES if t in vocab), None)
        where = f"tokenizer of {source}" if source else "tokenizer"
        if choice is None:
            fallback = tokenizer.unk_token or tokenizer.eos_token
            if fallback is None:
                raise ModelError(
                    f"{where} has no pad, unk or eos token to pad with; add a pad token to it "
                    "(tokenizer.pad_token = ...; save_pretrained)"
                )
            kind = "unk" if fallback == tokenizer.unk_token else "eos"
            log.warning(
                "%s has no padding token: padding with its %s token %r (padded positions are "
                "masked and unlabelled)",
                where,
                kind,
                fallback,
            )
            choice = fallback
        tokenizer.pad_token = choice
    tokenizer.padding_side = "right"
    config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(
    name: str, *, init: str = "pretrained", path: str = ""
) -> PreTrainedTokenizerBase:
    """The tokenizer of a preset, hub id or local folder (offline failures → ModelError);
    ``path`` / ``init`` as in :func:`load_model`."""
    preset = get_preset(name)
    folder = "" if init == "random" else _user_folder(preset, path)
    if preset is not None and not folder:
        build = preset.random_tokenizer if init == "random" else None
        try:
            return (build or preset.build_tokenizer)()
        except OSError as exc:
            raise ModelError(f"{_offline_hint(name)} ({_first_line(exc)})") from None
    from transformers import AutoTokenizer

    source = folder or _source(name)[0]
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(source or name)
    except (OSError, ValueError) as exc:
        if folder:
            raise ModelError(
                f"model path {folder}: no usable tokenizer ({_first_line(exc)})"
            ) from None
        raise ModelError(f"{_offline_hint(name)} ({_first_line(exc)})") from None


def load_model(
    name: str,
    *,
    task: str,
    labels: Sequence[str],
    multi_label: bool = False,
    dtype: str = "fp32",
    device: str = "auto",
    seed: int = 0,
    init: str = "pretrained",
    path: str = "",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``name`` with a fresh ``task`` head over ``labels``, in train mode on ``device``.

    ``seed`` fixes the random init of the head (and of random-init presets) so that every
    federated client starts from identical weights. ``init="random"``: no weights are read, the
    whole model is a random init from ``seed`` (a warning says it is not pretrained).
    ``path``: a local ``save_pretrained`` folder with the weights and tokenizer of ``name``.
    """
    if init not in ("pretrained", "random"):
        raise ConfigError(f"config key 'model-init': {init!r} is not one of pretrained, random")
    settings = _head_settings(task, labels, multi_label)
    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    source, preset_config = _source(name, init=init, path=path)
    config = _load_config(name, source, preset_config)
    for key, value in settings.items():
        setattr(config, key, value)
    folder = "" if init == "random" else _user_folder(get_preset(name), path)
    tokenizer = load_tokenizer(name, init=init, path=path)
    prepare_tokenizer(tokenizer, config, source=folder)
    if init == "random":
        source = None
        log.warning(
            "model-init=random: %s starts from random weights (seed %d). %s",
            name,
            seed,
            RANDOM_INIT_LABEL,
        )
    model = _instantiate(name, task, config, source, torch_dtype, seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    cast(Any, model).to(target)  # transformers' stub types `.to` oddly
    model.train()
    return model, tokenizer


def build_meta_model(name: str, *, task: str = "ner", num_labels: int = 3) -> PreTrainedModel:
    """The architecture of ``name`` on the ``meta`` device: shapes only, no weights, no download
    for presets (hub ids need a cached or downloadable config.json)."""
    if num_labels < 1:
        raise ConfigError(f"num-labels: {num_labels} must be >= 1")
    auto = _auto_class(task)
    preset = get_preset(name)
    config = (
        preset.build_config()
        if preset is not None
        else _load_config(name, _source(name, weights=False)[0], None)
    )
    config.num_labels = num_labels
    if task == "classification":
        config.problem_type = (
            "single_label_classification" if num_labels > 1 else "multi_label_classification"
        )
    with torch.device("meta"), quiet_transformers():
        return _from_config(name, task, auto, config)
