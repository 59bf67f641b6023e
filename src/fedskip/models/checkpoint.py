"""A user's own weights: checks of a ``save_pretrained`` folder before transformers reads it.

A hospital points ``model-path`` (or a preset's environment variable, ``FEDSKIP_LLAMA_3_2_1B``)
at the folder its copy of the weights lives in. transformers' own errors for a wrong or broken
folder are long and name a file, not the problem; these checks turn the three common mistakes
into one line naming the folder (a :class:`~fedskip.errors.ModelError`, exit status 2):

- the folder is not a checkpoint of the preset's family (``config.json`` missing, or its
  ``model_type`` is not the preset's, e.g. a BERT folder for ``model=llama-3.2-1b``);
- a sharded checkpoint misses shards (files its ``*.index.json`` lists but the folder lacks), or
  the folder holds no weights at all;
- the tokenizer has no padding token: fedskip then pads with an existing vocabulary entry
  (:func:`fedskip.models.loading.prepare_tokenizer`: a reserved pad entry when the vocabulary
  has one, else unk, else eos) and warns; only a tokenizer with none of these is refused.

Model-free and Flower-free: reads JSON files only.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedskip.errors import ModelError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = tuple(f"{name}.index.json" for name in WEIGHT_FILES)
FAMILY_NAMES = {"llama": "LLaMA", "bert": "BERT"}


def checkpoint_model_type(folder: Path) -> str:
    """``model_type`` of ``folder/config.json`` (ModelError naming the folder when unreadable)."""
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"model path {folder}: no config.json; not a save_pretrained folder")
    try:
        data = json.loads(config.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model path {folder}: config.json is not readable JSON ({exc})") from None
    return str(data.get("model_type", "")) if isinstance(data, dict) else ""


def missing_shards(folder: Path) -> list[str]:
    """Weight files ``folder``'s shard index lists that the folder lacks (sorted); ``[]`` for an
    unsharded or complete checkpoint."""
    missing: set[str] = set()
    for index in INDEX_FILES:
        path = folder / index
        if not path.is_file():
            continue
        try:
            weight_map = json.loads(path.read_text("utf-8")).get("weight_map", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise ModelError(f"model path {folder}: {index} is not readable JSON ({exc})") from None
        missing |= {str(f) for f in weight_map.values() if not (folder / str(f)).is_file()}
    return sorted(missing)


def check_checkpoint_folder(folder: str | Path, *, model_type: str = "") -> Path:
    """Check that ``folder`` is a complete ``save_pretrained`` checkpoint (of ``model_type``,
    when given); returns it as a Path. Raises ModelError naming the folder otherwise."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ModelError(f"model path {folder}: folder not found")
    found = checkpoint_model_type(path)
    if model_type and found != model_type:
        family = FAMILY_NAMES.get(model_type, model_type)
        raise ModelError(
            f"model path {folder}: not a {family} checkpoint (config.json has model_type "
            f"{found or 'none'!r}, expected {model_type!r})"
        )
    gaps = missing_shards(path)
    if gaps:
        shown = ", ".join(gaps[:3]) + (f" (+{len(gaps) - 3} more)" if len(gaps) > 3 else "")
        raise ModelError(
            f"model path {folder}: checkpoint is missing {len(gaps)} shard(s) listed in its "
            f"index: {shown}; copy the whole folder again"
        )
    has_index = any((path / i).is_file() for i in INDEX_FILES)
    if not has_index and not any((path / w).is_file() for w in WEIGHT_FILES):
        raise ModelError(
            f"model path {folder}: no weights ({' or '.join(WEIGHT_FILES)}, or a sharded index)"
        )
    return path
