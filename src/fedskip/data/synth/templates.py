"""Section headers, note titles and sentence templates by section (``data/notes.json``).

Markup: see ``slots.py``. Entity spans follow the i2b2 2010 concept guidelines: articles,
possessives, quantifiers and modifiers sit inside a span (``{aP}`` → ``her worsening dyspnea``),
assertion cues (``no``, ``denies``, ``rule out``, ``concern for``) outside it, and a problem slot's
``!assertion`` is what its ``.ast`` line says. ``CONTEXT_DEPENDENT`` lines put one surface form in
several roles (``[test:potassium]`` was low and was repleted with ``[treatment:potassium]``).
"""

from __future__ import annotations

from fedskip.data.synth.datafiles import load, pools

_NOTES = load("notes.json")
HEADERS = pools(_NOTES["headers"])
SECTIONS = pools(_NOTES["sections"])
TITLES = pools(_NOTES["titles"])
CONTEXT_DEPENDENT: tuple[str, ...] = tuple(_NOTES["context_dependent"])
