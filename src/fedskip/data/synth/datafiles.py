"""The generator's vocabulary and templates: JSON package data under ``synth/data/``, read once.

``lexicon.json`` (terms by type and domain), ``vocab.json`` (abbreviations, misspellings,
modifiers, units, places), ``notes.json`` (section headers, note titles, sentence templates) and
``mimic.json`` (lines of the non-discharge MIMIC note categories). Editing a file changes the
corpus: bump ``GENERATOR_VERSION`` (the cache key) with it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed ``synth/data/<name>`` (a JSON object); keys starting with ``_`` are comments."""
    text = resources.files("fedskip.data.synth").joinpath("data", name).read_text("utf-8")
    data = json.loads(text)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def strings(values: list[str]) -> tuple[str, ...]:
    """A JSON list of strings as a tuple (the generator samples from tuples)."""
    return tuple(values)


def pools(table: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """``{domain: [terms]}`` as ``{domain: (terms)}``."""
    return {key: tuple(values) for key, values in table.items()}
