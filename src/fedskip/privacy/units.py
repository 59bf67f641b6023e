"""The privacy unit of DP-SGD: which training examples together form one DP sample.

What is protected, against whom: DP-SGD bounds what the released updates (the server, the other
hospitals, whoever gets the model) reveal about *one unit* of a hospital's training data. An NER
example is one sentence window, so with ``dp-unit=example`` a note of 30 sentences is 30 DP
samples and the guarantee per note (or per patient) is far weaker than the reported ε. With
``dp-unit=note`` every example of one note, with ``dp-unit=patient`` every example of every note
of one patient, forms one unit: it is Poisson-sampled as a whole, its gradient (the sum of its
examples' gradients) is clipped to ``clip-norm`` as a whole, and ε is reported per unit.

``dp-unit=auto`` (the default) resolves at the data: ``patient`` when every training note of the
client carries a patient id, else ``note`` (logged). Patient ids come from the readers: MIMIC-III
``SUBJECT_ID``; one brat / i2b2 record file = one patient unless a ``patients.csv`` maps records
to patients; an optional ``patient`` field in JSONL; a ``# patient = ID`` line in CoNLL; a
``patient`` column in a Hugging Face dataset (``data-format=hf``: a ``save_to_disk`` folder or
parquet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fedskip.config import DP_UNITS
from fedskip.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DP_UNITS", "RESOLVED_UNITS", "example_units", "resolve_unit", "units_for"]
RESOLVED_UNITS = ("example", "note", "patient", "client")
"""Privacy units as reported, weakest first; ``client`` is client-level DP (``dp=client``)."""

PATIENT_ID_HELP = (
    "give patient ids (MIMIC-III: the SUBJECT_ID column; brat / i2b2: a patients.csv with "
    "columns record,patient in the data folder; JSONL: a 'patient' field per record; CoNLL: a "
    "'# patient = ID' line after -DOCSTART-; a Hugging Face dataset: a 'patient' column) or set "
    "dp-unit=note"
)


def resolve_unit(unit: str, docs: Sequence[Any]) -> str:
    """The unit ``dp-unit`` means for these documents: ``auto`` → ``patient`` when every
    document carries a patient id, else ``note``. ``patient`` on documents without ids is a
    :class:`DataError` naming a document, where it was read from and how to give ids."""
    if unit not in DP_UNITS:
        raise DataError(f"dp-unit {unit!r} is not one of {', '.join(DP_UNITS)}")
    missing = [d for d in docs if getattr(d, "patient_id", None) is None]
    if unit == "auto":
        resolved = "patient" if docs and not missing else "note"
        if missing:
            log.info(
                "dp-unit=auto: %d of %d training notes carry no patient id; DP-SGD protects "
                "each note (dp-unit=note)",
                len(missing),
                len(docs),
            )
        return resolved
    if unit == "patient" and missing:
        first = missing[0]
        where = first.meta.get("file") or first.site or "the data"
        raise DataError(
            f"dp-unit=patient: {len(missing)} of {len(docs)} training notes carry no patient id "
            f"(e.g. note '{first.doc_id}' from {where}); {PATIENT_ID_HELP}"
        )
    return unit


def example_units(unit: str, docs: Sequence[Any], example_docs: Sequence[int]) -> list[int]:
    """Per example, its unit index (0, 1, ... in order of first appearance) for a *resolved*
    ``unit`` (patient / note / example). ``example_docs[i]`` is example ``i``'s index in
    ``docs`` (``EncodedNer.example_documents()``)."""
    if unit == "example":
        return list(range(len(example_docs)))
    if unit == "note":
        keys: list[Any] = list(example_docs)
    elif unit == "patient":
        keys = [docs[d].patient_id for d in example_docs]
    else:
        raise ValueError(f"not a resolved privacy unit: {unit!r}")
    index: dict[Any, int] = {}
    return [index.setdefault(k, len(index)) for k in keys]


def units_for(unit: str, docs: Sequence[Any], example_docs: Sequence[int]) -> tuple[str, list[int]]:
    """``(resolved unit, unit index per example)``: :func:`resolve_unit` then
    :func:`example_units` (only the documents that gave an example count)."""
    used = sorted(set(example_docs))
    resolved = resolve_unit(unit, [docs[d] for d in used])
    return resolved, example_units(resolved, docs, example_docs)


def bind_units(privacy: Any, docs: Sequence[Any], encoded: Any) -> None:
    """Tell a DP-SGD hook (:meth:`fedskip.privacy.dpsgd.DPSGD.use_units`) the privacy unit of
    each example of ``encoded`` (the encoding of ``docs``); no-op for ``privacy=None``."""
    if privacy is not None:
        privacy.use_units(*units_for(privacy.settings.unit, docs, encoded.example_documents()))


def unit_code(unit: str) -> int:
    """The unit as a number for Flower metrics (0 example, 1 note, 2 patient, 3 client)."""
    return RESOLVED_UNITS.index(unit)


def unit_name(code: float) -> str:
    """Inverse of :func:`unit_code`."""
    return RESOLVED_UNITS[int(code)]
