"""The synthetic corpus shaped for a privacy study: many patients per site, few short notes
each (config keys synth-notes-per-patient, synth-note-lines), for NER and ICD-9 coding."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from fedskip.config import Config
from fedskip.data.readers import read_dataset
from fedskip.data.synth import corpus_key, ensure_synth, write_corpus
from fedskip.data.synth.generate import NoteShape
from fedskip.data.synth.sites import site_size
from fedskip.errors import ConfigError


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sites of 40 notes (site sizes 50 and 30), two notes of three lines per patient."""
    root = tmp_path_factory.mktemp("shape") / "corpus"
    return write_corpus(root, sites=2, docs=40, shape=NoteShape(notes_per_patient=2, note_lines=3))


def test_every_patient_has_the_configured_notes_of_the_configured_lines(shaped: Path) -> None:
    for k in (1, 2):
        docs = read_dataset(shaped / "ner" / f"site-{k}", "i2b2").documents
        assert len(docs) == site_size(k, 40)
        per_patient = Counter(d.patient_id for d in docs)
        assert set(per_patient.values()) == {2}  # sizes 50 and 30 are even: no cut plan
        for doc in docs:
            lines = (shaped / "ner" / f"site-{k}" / "txt" / f"{doc.doc_id}.txt").read_text()
            assert len([line for line in lines.split("\n") if line.strip()]) == 3


def test_icd9_variant_has_one_admission_per_patient_and_a_summary_last(shaped: Path) -> None:
    with (shaped / "classification" / "site-1" / "NOTEEVENTS.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r["ISERROR"]]
    assert len(rows) == site_size(1, 40)
    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_patient.setdefault(row["SUBJECT_ID"], []).append(row)
    assert len(by_patient) == 25
    for notes in by_patient.values():
        assert len(notes) == 2 and len({n["HADM_ID"] for n in notes}) == 1
        assert notes[-1]["CATEGORY"] == "Discharge summary"
        assert all(len([x for x in n["TEXT"].split("\n") if x.strip()]) <= 3 for n in notes)


def test_the_default_corpus_keeps_its_cache_key() -> None:
    """A default shape adds nothing to the key: cached corpora and records stay valid."""
    assert corpus_key(4, 60, 42, 0.02) == "a17b1db006417457"
    assert corpus_key(4, 60, 42, 0.02, NoteShape(1, 4)) != corpus_key(4, 60, 42, 0.02)


def test_ensure_synth_makes_the_shaped_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSKIP_CACHE", str(tmp_path))
    cfg = Config(synth_sites=1, synth_docs=6, synth_notes_per_patient=1, synth_note_lines=2)
    folder = ensure_synth(cfg)
    assert folder.name == f"synth-{corpus_key(1, 6, cfg.seed, cfg.label_noise, NoteShape(1, 2))}"
    docs = read_dataset(folder / "ner" / "site-1", "i2b2").documents
    assert len({d.patient_id for d in docs}) == len(docs) == site_size(1, 6)
    assert "notes_per_patient=1 note_lines=2" in (folder / "README.txt").read_text()


@pytest.mark.parametrize("key", ["synth_notes_per_patient", "synth_note_lines"])
def test_negative_shape_is_a_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("_", "-")):
        Config(**{key: -1})
