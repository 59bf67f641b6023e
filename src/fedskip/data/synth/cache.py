"""The cached default corpus: ``data=synth`` resolves to a generated folder, made once per parameters."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fedskip.data.synth.generate import GENERATOR_VERSION, NoteShape
from fedskip.data.synth.writers import shape_parameters, write_corpus
from fedskip.errors import DataError

if TYPE_CHECKING:
    from fedskip.config import Config

COMPLETE_MARKER = "manifest.json"
"""Written last by :func:`write_corpus`; a cache folder without it is incomplete."""


def cache_root() -> Path:
    """``$FEDSKIP_CACHE``, else ``~/.cache/fedskip``."""
    env = os.environ.get("FEDSKIP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedskip"


def corpus_key(
    sites: int, docs: int, seed: int, label_noise: float, shape: NoteShape | None = None
) -> str:
    """A short hash of the generation parameters and the generator version (a default
    ``shape`` adds nothing, so the i2b2-like corpus keeps its key)."""
    params = {
        "sites": sites,
        "docs": docs,
        "seed": seed,
        "label_noise": float(label_noise),
        "version": GENERATOR_VERSION,
        **shape_parameters(shape or NoteShape()),
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def note_shape(cfg: Config) -> NoteShape:
    """``cfg``'s synth-notes-per-patient and synth-note-lines."""
    return NoteShape(cfg.synth_notes_per_patient, cfg.synth_note_lines)


def ensure_synth(cfg: Config) -> Path:
    """The corpus folder for ``cfg``'s synth-sites, synth-docs, seed and label-noise.

    Generated on first use into a temporary folder beside the cache entry and renamed into place,
    so a crash or a concurrent run never leaves a half-written corpus under the final name.
    """
    root = cache_root()
    shape = note_shape(cfg)
    key = corpus_key(cfg.synth_sites, cfg.synth_docs, cfg.seed, cfg.label_noise, shape)
    final = root / f"synth-{key}"
    if (final / COMPLETE_MARKER).is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    except OSError as exc:
        raise DataError(
            f"{root}: cannot create the synthetic-corpus cache ({exc.strerror}); "
            "set FEDSKIP_CACHE to a writable folder"
        ) from None
    try:
        write_corpus(
            tmp,
            sites=cfg.synth_sites,
            docs=cfg.synth_docs,
            seed=cfg.seed,
            label_noise=cfg.label_noise,
            shape=shape,
        )
        if final.exists() and not (final / COMPLETE_MARKER).is_file():
            shutil.rmtree(final)  # an incomplete entry left by hand or an old crash
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / COMPLETE_MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
