"""Write the synthetic corpus to disk: i2b2 2010 NER folders, MIMIC-III CSVs, README, manifest.

Layout under ``out``::

    ner/site-K/txt/<id>.txt            one sentence per line, whitespace-tokenised
    ner/site-K/concept/<id>.con        c="chest pain" 4:17 4:18||t="problem"
    ner/site-K/ast/<id>.ast            c="chest pain" 4:17 4:18||t="problem"||a="absent"
    ner/site-K/patients.csv            record,patient (several notes per patient)
    classification/site-K/NOTEEVENTS.csv      MIMIC-III v1.4 columns, quoted multi-line TEXT
    classification/site-K/DIAGNOSES_ICD.csv   ICD-9 codes per admission, as strings
    README.txt, manifest.json

Files are byte-identical for identical parameters (no timestamps, no hash-order iteration).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fedskip.data.mimic import NOTE_COLUMNS
from fedskip.data.patients import PATIENTS_FILE
from fedskip.data.synth.classification import ClsSite, generate_cls_site
from fedskip.data.synth.generate import (
    GENERATOR_VERSION,
    NerNote,
    NoteShape,
    apply_ner_noise,
    generate_ner_site,
    site_rng,
)
from fedskip.data.synth.sites import site_profile, site_size
from fedskip.errors import ConfigError

DIAGNOSIS_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE")


def con_line(note: NerNote, index: int) -> str:
    """The .con line of ``note.mentions[index]``."""
    m = note.mentions[index]
    return f'c="{note.mention_text(m)}" {m.line}:{m.start} {m.line}:{m.end}||t="{m.type}"'


def ast_line(note: NerNote, index: int) -> str:
    """The .ast line of ``note.mentions[index]`` (a problem)."""
    return f'{con_line(note, index)}||a="{note.mentions[index].assertion}"'


def write_i2b2(notes: list[NerNote], folder: Path) -> None:
    """``txt/<id>.txt``, ``concept/<id>.con`` and ``ast/<id>.ast`` per note, and ``patients.csv``."""
    for sub in ("txt", "concept", "ast"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for note in notes:
        text = "\n".join(" ".join(tokens) for tokens in note.lines) + "\n"
        (folder / "txt" / f"{note.doc_id}.txt").write_text(text, encoding="utf-8")
        note.mentions.sort(key=lambda m: (m.line, m.start))
        indices = range(len(note.mentions))
        cons = "".join(con_line(note, i) + "\n" for i in indices)
        (folder / "concept" / f"{note.doc_id}.con").write_text(cons, encoding="utf-8")
        problems = [i for i in indices if note.mentions[i].type == "problem"]
        asts = "".join(ast_line(note, i) + "\n" for i in problems)
        (folder / "ast" / f"{note.doc_id}.ast").write_text(asts, encoding="utf-8")
    rows = "".join(f"{note.doc_id},{note.patient_id}\n" for note in notes)
    (folder / PATIENTS_FILE).write_text("record,patient\n" + rows, encoding="utf-8")


def _csv_field(value: object) -> str:
    """MIMIC's CSV style: numbers bare, strings double-quoted, missing values empty."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace('"', '""') + '"'


def _csv(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    lines = [",".join(header)] + [",".join(_csv_field(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def write_mimic(site: ClsSite, folder: Path, row_offset: int) -> None:
    """``NOTEEVENTS.csv`` and ``DIAGNOSES_ICD.csv`` of one site (ROW_IDs from ``row_offset + 1``)."""
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[tuple[object, ...]] = [
        (
            row_offset + i + 1,
            n.subject_id,
            n.hadm_id,
            n.chartdate,
            n.charttime,
            n.storetime,
            n.category,
            n.description,
            n.cgid,
            n.iserror,
            n.text,
        )
        for i, n in enumerate(site.notes)
    ]
    (folder / "NOTEEVENTS.csv").write_text(_csv(NOTE_COLUMNS, notes), encoding="utf-8")
    diagnoses: list[tuple[object, ...]] = []
    for adm in site.admissions:
        for seq, code in enumerate(adm.codes, start=1):
            diagnoses.append(
                (row_offset + len(diagnoses) + 1, adm.subject_id, adm.hadm_id, seq, code)
            )
    (folder / "DIAGNOSES_ICD.csv").write_text(_csv(DIAGNOSIS_COLUMNS, diagnoses), encoding="utf-8")


def _ner_stats(notes: list[NerNote], noise: dict[str, int]) -> dict[str, object]:
    types = Counter(m.type for n in notes for m in n.mentions)
    assertions = Counter(m.assertion for n in notes for m in n.mentions if m.type == "problem")
    return {
        "documents": len(notes),
        "patients": len({n.patient_id for n in notes}),
        "assertions": dict(sorted(assertions.items())),
        "lines": sum(len(n.lines) for n in notes),
        "tokens": sum(len(t) for n in notes for t in n.lines),
        "mentions": dict(sorted(types.items())),
        "noise": noise,
    }


def _validate(sites: int, docs: int, label_noise: float) -> None:
    if sites < 1:
        raise ConfigError(f"config key 'synth-sites': {sites} must be >= 1")
    if docs < 2:
        raise ConfigError(f"config key 'synth-docs': {docs} must be >= 2")
    if not 0.0 <= label_noise <= 0.5:
        raise ConfigError(f"config key 'label-noise': {label_noise} must be between 0.0 and 0.5")


def write_corpus(
    out: str | Path,
    *,
    sites: int = 4,
    docs: int = 60,
    seed: int = 42,
    label_noise: float = 0.02,
    shape: NoteShape | None = None,
) -> Path:
    """Generate the synthetic multi-hospital corpus into ``out`` and return ``out``.

    ``docs`` is the mean number of documents per site and task (site ``k`` holds
    ``docs × SIZE_FACTORS[k]``, at least 2); ``label_noise`` is the share of NER concepts
    dropped/shifted/retyped and of notes/admissions whose labels are flipped; ``shape``: notes
    per patient and lines per note (:class:`~fedskip.data.synth.generate.NoteShape`; the
    default is the i2b2-like corpus).
    """
    _validate(sites, docs, label_noise)
    shape = shape or NoteShape()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {
        "generator": "fedskip.data.synth",
        "version": GENERATOR_VERSION,
        "parameters": {
            "sites": sites,
            "docs": docs,
            "seed": seed,
            "label_noise": label_noise,
            **shape_parameters(shape),
        },
        "sites": {},
    }
    row_offset = 0
    for k in range(1, sites + 1):
        profile, n = site_profile(k), site_size(k, docs)
        notes = generate_ner_site(k, profile, n, seed, shape)
        noise = apply_ner_noise(notes, label_noise, site_rng(seed, "ner", k, "noise"))
        write_i2b2(notes, root / "ner" / f"site-{k}")
        cls = generate_cls_site(k, profile, n, seed, label_noise, shape)
        write_mimic(cls, root / "classification" / f"site-{k}", row_offset)
        row_offset += 100000
        manifest["sites"][f"site-{k}"] = {  # type: ignore[index]
            "profile": profile.name,
            "specialty": profile.specialty,
            "style": {
                "abbreviation_rate": profile.abbrev_rate,
                "misspelling_rate": profile.typo_rate,
                "casing": profile.casing,
                "house_style": profile.house_style,
            },
            "ner": _ner_stats(notes, noise),
            "classification": cls.stats,
        }
    (root / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (root / "README.txt").write_text(readme(manifest), encoding="utf-8")
    return root


def shape_parameters(shape: NoteShape) -> dict[str, int]:
    """The non-default shape keys (none for the i2b2-like corpus, so its manifest and cache key
    are unchanged)."""
    out = {}
    if shape.notes_per_patient:
        out["notes_per_patient"] = shape.notes_per_patient
    if shape.note_lines:
        out["note_lines"] = shape.note_lines
    return out


def readme(manifest: dict[str, object]) -> str:
    """The corpus README: what it is, how it was generated, and per-site sizes."""
    params = manifest["parameters"]
    assert isinstance(params, dict)
    site_lines = []
    for name, info in manifest["sites"].items():  # type: ignore[attr-defined]
        ner, cls = info["ner"], info["classification"]
        site_lines.append(
            f"  {name}: {info['profile']} — NER {ner['documents']} notes, "
            f"{sum(ner['mentions'].values())} concepts; classification {cls['notes']} notes "
            f"(+{cls['error_rows']} ISERROR rows), {cls['admissions']} admissions"
        )
        style = info["style"]
        site_lines.append(
            f"      style: {style['casing']}, abbreviations {style['abbreviation_rate']:.0%}, "
            f"misspellings {style['misspelling_rate']:.0%}, house templates #{style['house_style']}"
        )
    shape = "".join(f" {k}={params[k]}" for k in ("notes_per_patient", "note_lines") if k in params)
    return README_TEMPLATE.format(
        version=manifest["version"],
        sites_detail="\n".join(site_lines),
        shape=shape,
        shape_flags=_shape_flags(params),
        **params,
    )


def _shape_flags(params: dict[str, object]) -> str:
    """The ``fedskip data synth`` flags of the non-default shape keys (none by default)."""
    flags = {"notes_per_patient": "--notes-per-patient", "note_lines": "--note-lines"}
    return "".join(f" {flag} {params[key]}" for key, flag in flags.items() if key in params)


README_TEMPLATE = """fedskip synthetic multi-hospital clinical corpus
================================================

SYNTHETIC DATA. Every note, patient, date and label here was generated by fedskip
(fedskip.data.synth, generator version {version}); none of it describes a real person.
It exists so that every fedskip command runs out of the box; replace it with your own
i2b2 2010 / MIMIC-III data (same layout) for real experiments.

Parameters: sites={sites} docs={docs} seed={seed} label_noise={label_noise}{shape}
Regenerate (in this folder; or give another --out):
  fedskip data synth --out . --sites {sites} --docs {docs} --seed {seed} --label-noise {label_noise}{shape_flags}

Sites differ in specialty mix (which problems, tests and treatments they see), writing style
(abbreviation and misspelling rates, casing, list vs. sentence style, date formats, their own
section names and note titles), note-category mix and size: the natural non-IID split used by
partition=natural.
{sites_detail}

ner/site-K/           i2b2 2010 concept extraction format
  txt/<id>.txt        one sentence per line, tokens separated by single spaces; blank lines count
  concept/<id>.con    c="<lower-cased text>" L:S L:E||t="problem|test|treatment"
                      L = 1-based line, S/E = 0-based first/last whitespace token (inclusive)
  ast/<id>.ast        the problems again, with ||a="present|absent|possible|conditional|
                      hypothetical|associated_with_someone_else" as the sentence's cues say
  patients.csv        record,patient: a patient's stay leaves one to four notes (admission note,
                      progress notes, discharge summary) sharing history and medications
  Annotation follows the i2b2 2010 concept guidelines at every site: articles, possessives,
  quantifiers and modifiers are inside a span ("a 2 cm liver lesion", "her worsening shortness
  of breath", "his home medications", "an mri of the brain"); assertion cues (no, denies,
  rule out, concern for) stay outside; negated and hypothetical concepts are annotated. The
  same words can take different types, or none, by context (potassium: test or treatment;
  paracentesis: test or treatment; ct surgery, the dialysis unit: no concept).
  Label noise: label_noise x (number of concepts) concepts per site were dropped, had one
  boundary shifted by a token, or were retyped (counts in manifest.json).

classification/site-K/  MIMIC-III v1.4 format
  NOTEEVENTS.csv      ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,
                      CGID,ISERROR,TEXT; TEXT is quoted and spans lines. label=category uses
                      CATEGORY (note type). Rows with ISERROR=1 are erroneous and must be dropped.
  DIAGNOSES_ICD.csv   ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE (codes are strings: "0389",
                      "V4581"); label=icd9 joins discharge summaries to their admission's codes.
  Label noise: label_noise x notes got another CATEGORY; label_noise x admissions had one ICD-9
  code dropped or a random one added.

manifest.json         parameters, generator version and per-site counts
"""
