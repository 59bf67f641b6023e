"""The synthetic multi-hospital corpus: format, determinism, difficulty statistics, noise, cache."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from fedskip.config import Config
from fedskip.data.synth import GENERATOR_VERSION, corpus_key, ensure_synth, write_corpus
from fedskip.data.synth.sites import site_size
from fedskip.errors import ConfigError, DataError

CON = re.compile(r'^c="(.+)" (\d+):(\d+) (\d+):(\d+)\|\|t="(problem|test|treatment)"$')
SITES = ("site-1", "site-2", "site-3", "site-4")


def parse_con(txt: Path, con: Path) -> list[tuple[str, int, int, int, str]]:
    """A tiny independent .con parser: (text, line, start, end, type), checked against the tokens."""
    lines = txt.read_text(encoding="utf-8").split("\n")
    out = []
    for raw in con.read_text(encoding="utf-8").splitlines():
        m = CON.match(raw)
        assert m, f"{con}: bad line {raw!r}"
        text, l1, s, l2, e, kind = m.groups()
        assert l1 == l2, f"{con}: concept spans lines: {raw!r}"
        line, start, end = int(l1), int(s), int(e)
        tokens = lines[line - 1].split(" ")
        assert 0 <= start <= end < len(tokens), f"{con}: token index out of range: {raw!r}"
        assert " ".join(tokens[start : end + 1]).lower() == text, f"{con}: text mismatch: {raw!r}"
        out.append((text, line, start, end, kind))
    return out


def load_ner(root: Path) -> dict[str, list[list[tuple[str, int, int, int, str]]]]:
    """Site → documents (in id order) → concepts."""
    sites = {}
    for site_dir in sorted((root / "ner").iterdir()):
        docs = [
            parse_con(site_dir / "txt" / f"{con.stem}.txt", con)
            for con in sorted((site_dir / "concept").glob("*.con"))
        ]
        sites[site_dir.name] = docs
    return sites


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default corpus (sites=4, docs=60, seed=42, label_noise=0.02)."""
    return write_corpus(tmp_path_factory.mktemp("synth") / "corpus")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default corpus without label noise (same text as ``corpus``)."""
    return write_corpus(tmp_path_factory.mktemp("synth") / "clean", label_noise=0.0)


@pytest.fixture(scope="module")
def clean_ner(clean: Path) -> dict[str, list[list[tuple[str, int, int, int, str]]]]:
    return load_ner(clean)


def test_layout_manifest_and_site_sizes(corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["version"] == GENERATOR_VERSION
    assert manifest["parameters"] == {"sites": 4, "docs": 60, "seed": 42, "label_noise": 0.02}
    assert "SYNTHETIC DATA" in (corpus / "README.txt").read_text()
    sizes = [manifest["sites"][s]["ner"]["documents"] for s in SITES]
    assert sizes == [75, 45, 90, 30]  # docs × (1.25, 0.75, 1.5, 0.5): sizes differ by site
    for site, n in zip(SITES, sizes):
        assert len(list((corpus / "ner" / site / "txt").glob("*.txt"))) == n
        assert len(list((corpus / "ner" / site / "concept").glob("*.con"))) == n
        assert manifest["sites"][site]["classification"]["notes"] == n
        for table in ("NOTEEVENTS.csv", "DIAGNOSES_ICD.csv"):
            assert (corpus / "classification" / site / table).is_file()


def test_site_size_is_at_least_two() -> None:
    assert [site_size(k, 2) for k in range(1, 6)] == [2, 2, 3, 2, 2]
    assert [site_size(k, 60) for k in range(1, 5)] == [75, 45, 90, 30]


def test_same_parameters_give_byte_identical_files(tmp_path: Path) -> None:
    a = tree_bytes(write_corpus(tmp_path / "a", sites=2, docs=6, seed=7))
    b = tree_bytes(write_corpus(tmp_path / "b", sites=2, docs=6, seed=7))
    c = tree_bytes(write_corpus(tmp_path / "c", sites=2, docs=6, seed=8))
    assert a == b
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a) > len(a) // 2


def test_adding_sites_keeps_existing_sites(tmp_path: Path) -> None:
    two = tree_bytes(write_corpus(tmp_path / "two", sites=2, docs=4))
    three = tree_bytes(write_corpus(tmp_path / "three", sites=3, docs=4))
    shared = [k for k in two if k.startswith(("ner/site-", "classification/site-"))]
    assert shared and all(two[k] == three[k] for k in shared)


def test_con_files_match_their_tokens(corpus: Path) -> None:
    sites = load_ner(corpus)  # parse_con asserts format, bounds and quoted text
    for docs in sites.values():
        for concepts in docs:
            spans = sorted((line, start, end) for _, line, start, end, _ in concepts)
            for (l1, _, e1), (l2, s2, _) in zip(spans, spans[1:]):
                assert l1 != l2 or e1 < s2, "overlapping concepts"


def test_blank_lines_count_as_lines(corpus: Path) -> None:
    txt = (corpus / "ner" / "site-1" / "txt" / "site1-0001.txt").read_text()
    assert "\n\n" in txt  # site 1 separates sections with blank lines


def test_real_readers_read_every_concept_and_drop_error_rows(corpus: Path) -> None:
    from fedskip.data.readers import read_sites

    manifest = json.loads((corpus / "manifest.json").read_text())
    ner = read_sites(corpus / "ner")
    assert list(ner) == list(SITES)
    for site, ds in ner.items():
        expected = manifest["sites"][site]["ner"]["mentions"]
        assert ds.entity_counts() == expected
        assert ds.dropped_overlaps == 0
    categories = read_sites(corpus / "classification", label="category")
    for site, ds in categories.items():
        info = manifest["sites"][site]["classification"]
        assert len(ds.documents) == info["notes"]
        assert {k: v for k, v in info["categories"].items() if v} == {
            name + " " * (name in ("Physician", "Respiratory")): n
            for name, n in ds.label_counts().items()
        }
    icd9 = read_sites(corpus / "classification", label="icd9", icd9_top_k=10)
    for site, ds in icd9.items():
        assert ds.multi_label
        assert len(ds.documents) >= 5
        # CATEGORY decides what is a discharge summary, label noise included
        assert (
            len(ds.documents)
            <= manifest["sites"][site]["classification"]["categories"]["Discharge summary"]
        )


def test_mimic_tables_use_mimic_columns_and_code_strings(corpus: Path) -> None:
    site = corpus / "classification" / "site-1"
    with (site / "NOTEEVENTS.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = (site / "NOTEEVENTS.csv").read_text().split("\n", 1)[0]
    assert header == (
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT"
    )
    assert sum(r["ISERROR"] == "1" for r in rows) == 3
    assert {r["ISERROR"] for r in rows} == {"", "1"}
    assert len({r["ROW_ID"] for r in rows}) == len(rows)
    assert all("\n" in r["TEXT"].rstrip("\n") for r in rows if r["CATEGORY"] == "Discharge summary")
    codes = []
    for s in SITES:
        diag = (corpus / "classification" / s / "DIAGNOSES_ICD.csv").read_text().splitlines()
        assert diag[0] == "ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE"
        codes += [line.rsplit(",", 1)[1] for line in diag[1:]]
    assert all(re.fullmatch(r'"(V\d{3,4}|\d{3,5})"', c) for c in codes)
    assert any(c.startswith('"0') for c in codes) and any(c.startswith('"V') for c in codes)


def test_each_type_is_frequent_and_lexically_diverse(clean_ner: dict) -> None:
    forms: dict[str, set[str]] = defaultdict(set)
    counts: Counter[str] = Counter()
    for docs in clean_ner.values():
        for concepts in docs:
            for text, *_, kind in concepts:
                forms[kind].add(text)
                counts[kind] += 1
    total = sum(counts.values())
    assert total > 8000
    assert all(counts[k] / total > 0.2 for k in ("problem", "test", "treatment"))
    assert all(len(forms[k]) >= 150 for k in ("problem", "test", "treatment"))


def test_same_surface_form_takes_several_types_by_context(clean: Path) -> None:
    types: dict[str, set[str]] = defaultdict(set)
    token_outside: Counter[str] = Counter()
    for site_dir in sorted((clean / "ner").iterdir()):
        for con in sorted((site_dir / "concept").glob("*.con")):
            txt = site_dir / "txt" / f"{con.stem}.txt"
            concepts = parse_con(txt, con)
            inside = {(line, i) for _, line, s, e, _ in concepts for i in range(s, e + 1)}
            for text, *_, kind in concepts:
                types[text].add(kind)
            for n, line in enumerate(txt.read_text().split("\n"), start=1):
                for i, tok in enumerate(line.split(" ")):
                    if (n, i) not in inside:
                        token_outside[tok.lower()] += 1
    ambiguous = {t for t, kinds in types.items() if len(kinds) > 1}
    assert len(ambiguous) >= 10
    assert {"potassium", "paracentesis", "bronchoscopy", "calcium"} <= ambiguous
    # entity words that are no entity in other contexts (ct surgery, the dialysis unit, mri compatible)
    for word in ("ct", "dialysis", "mri"):
        assert token_outside[word] > 0
    assert types["dialysis"] == {"treatment"}


def test_test_split_has_unseen_surface_forms(clean_ner: dict) -> None:
    seen: set[str] = set()
    held_out: list[str] = []
    for docs in clean_ner.values():
        cut = len(docs) - max(1, round(0.2 * len(docs)))
        seen.update(text for concepts in docs[:cut] for text, *_ in concepts)
        held_out += [text for concepts in docs[cut:] for text, *_ in concepts]
    unseen = sum(text not in seen for text in held_out) / len(held_out)
    assert unseen >= 0.15


def test_sites_differ_in_specialty_and_labels(clean: Path, clean_ner: dict) -> None:
    def share(site: str, words: tuple[str, ...]) -> float:
        docs = clean_ner[site]
        texts = [t for concepts in docs for t, *_ in concepts]
        return sum(any(w in t for w in words) for t in texts) / len(texts)

    cardio = (
        "heart failure",
        "chf",
        "atrial fibrillation",
        "afib",
        "coronary",
        "metoprolol",
        "troponin",
    )
    onc = ("cancer", "carcinoma", "metasta", "lymphoma", "chemotherapy", "neutropeni")
    assert share("site-1", cardio) > 2 * share("site-2", cardio)
    assert share("site-2", onc) > 2 * share("site-1", onc)
    manifest = json.loads((clean / "manifest.json").read_text())
    cats = {s: manifest["sites"][s]["classification"]["categories"] for s in SITES}
    assert cats["site-1"]["ECG"] > cats["site-2"]["ECG"]
    assert cats["site-3"]["Respiratory "] > cats["site-1"]["Respiratory "]


def test_label_noise_corrupts_exactly_the_configured_share(clean: Path, corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    for site in SITES:
        ner = clean / "ner" / site
        noisy = corpus / "ner" / site
        assert tree_bytes(ner / "txt") == tree_bytes(noisy / "txt")  # noise never touches text
        before = {
            (c.stem, line) for c in ner.glob("concept/*.con") for line in c.read_text().splitlines()
        }
        after = {
            (c.stem, line)
            for c in noisy.glob("concept/*.con")
            for line in c.read_text().splitlines()
        }
        changed = len(before - after)
        assert changed == round(0.02 * len(before))
        assert changed == sum(manifest["sites"][site]["ner"]["noise"].values())
        cls = manifest["sites"][site]["classification"]
        assert cls["categories_flipped"] == round(0.02 * cls["notes"])


def test_bad_parameters_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synth-sites"):
        write_corpus(tmp_path, sites=0)
    with pytest.raises(ConfigError, match="synth-docs"):
        write_corpus(tmp_path, docs=1)
    with pytest.raises(ConfigError, match="label-noise"):
        write_corpus(tmp_path, label_noise=0.7)


def test_ensure_synth_generates_once_per_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSKIP_CACHE", str(tmp_path / "cache"))
    cfg = Config(synth_sites=2, synth_docs=4, seed=3, label_noise=0.0)
    first = ensure_synth(cfg)
    assert first == tmp_path / "cache" / f"synth-{corpus_key(2, 4, 3, 0.0)}"
    stamp = (first / "manifest.json").stat().st_mtime_ns
    (first / "marker").write_text("kept")
    assert ensure_synth(cfg) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp and (first / "marker").exists()
    other = ensure_synth(cfg.replace(seed=4))
    assert other != first
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [first.name, other.name]
    )


def test_ensure_synth_replaces_an_incomplete_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSKIP_CACHE", str(tmp_path))
    cfg = Config(synth_sites=1, synth_docs=2)
    broken = tmp_path / f"synth-{corpus_key(1, 2, cfg.seed, cfg.label_noise)}"
    (broken / "ner").mkdir(parents=True)
    assert ensure_synth(cfg) == broken
    assert (broken / "manifest.json").is_file() and (broken / "ner" / "site-1").is_dir()


def test_ensure_synth_unwritable_cache_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FEDSKIP_CACHE", str(blocker))
    with pytest.raises(DataError, match="FEDSKIP_CACHE"):
        ensure_synth(Config(synth_sites=1, synth_docs=2))


DETERMINER_WORDS = ("a", "an", "the", "his", "her", "some", "several", "multiple", "two")
NEGATION_CUES = ("no", "denies", "without", "negative", "ruled", "not")
UNCERTAINTY_CUES = (
    "r/o",
    "rule",
    "concern",
    "concerning",
    "possible",
    "likely",
    "versus",
    "evaluate",
    "suspected",
    "differential",
    "workup",
)
HYPOTHETICAL_CUES = ("if", "return", "call", "develop")
FAMILY_CUES = ("mother", "father", "brother", "sister", "family")
AST = re.compile(
    r'^(c=".+" \d+:\d+ \d+:\d+\|\|t="problem")\|\|a="(present|absent|possible|conditional|'
    r'hypothetical|associated_with_someone_else)"$'
)


def note_files(root: Path) -> list[tuple[Path, Path, Path]]:
    """(txt, con, ast) of every generated note."""
    return [
        (site / "txt" / f"{con.stem}.txt", con, site / "ast" / f"{con.stem}.ast")
        for site in sorted((root / "ner").iterdir())
        for con in sorted((site / "concept").glob("*.con"))
    ]


def test_every_site_puts_determiners_and_modifiers_inside_spans(clean_ner: dict) -> None:
    """i2b2 2010: articles, possessives, quantifiers and modifiers belong to the concept."""
    for site, docs in clean_ner.items():
        texts = [t for concepts in docs for t, *_ in concepts]
        first = Counter(t.split(" ", 1)[0] for t in texts)
        assert sum(first[w] for w in DETERMINER_WORDS) / len(texts) > 0.08, site
        assert first["a"] and first["an"] and first["his"] + first["her"] and first["the"], site
        assert sum(first[w] for w in ("severe", "mild", "acute", "chronic", "left", "right")), site


def test_no_determiner_is_left_outside_a_span(clean: Path) -> None:
    left_out = 0
    for txt, con, _ in note_files(clean):
        lines = txt.read_text(encoding="utf-8").split("\n")
        for _, line, start, _, _ in parse_con(txt, con):
            before = lines[line - 1].split(" ")[start - 1].lower() if start else ""
            left_out += before in ("a", "an", "the", "his", "her")
    assert left_out == 0


def test_guideline_phrases_appear_whole(clean_ner: dict) -> None:
    texts = {t for docs in clean_ner.values() for concepts in docs for t, *_ in concepts}
    assert any(re.fullmatch(r"an? \d+(\.\d)? (cm|mm) [a-z ]+", t) for t in texts)  # a 2 cm mass
    assert any(re.fullmatch(r"an? (mri|ct|ultrasound) of the [a-z ]+", t) for t in texts)
    assert any(t in ("his home medications", "her home medications") for t in texts)
    assert any(t.startswith(("her worsening ", "his worsening ")) for t in texts)


def test_ast_files_list_the_problems_with_cue_consistent_assertions(clean: Path) -> None:
    counts: Counter[str] = Counter()
    for txt, con, ast in note_files(clean):
        problems = [
            raw.split("||t=")[0] for raw in con.read_text().splitlines() if 'problem"' in raw
        ]
        lines = txt.read_text(encoding="utf-8").split("\n")
        asserted = []
        for raw in ast.read_text().splitlines():
            m = AST.match(raw)
            assert m, f"{ast}: bad line {raw!r}"
            asserted.append(m.group(1).split("||t=")[0])
            where = m.group(1).split('" ', 1)[1].split()[0]
            line, start = (int(x) for x in where.split(":"))
            words = [w.lower() for w in lines[line - 1].split(" ")]
            before = words[:start]
            kind = m.group(2)
            counts[kind] += 1
            cues = {
                "absent": NEGATION_CUES,
                "possible": UNCERTAINTY_CUES,
                "hypothetical": HYPOTHETICAL_CUES,
                "associated_with_someone_else": FAMILY_CUES,
            }.get(kind)
            if cues:
                assert set(words) & set(cues), f"{ast}: {kind} without a cue: {raw!r}"
            if before[-1:] in (["denies"], ["no"], ["without"]):
                assert kind == "absent", f"{ast}: negated but {kind}: {raw!r}"
        assert asserted == problems, ast
    assert all(counts[k] > 20 for k in ("present", "absent", "possible", "hypothetical"))
    assert counts["associated_with_someone_else"] > 5


def test_patients_have_several_notes_that_share_their_history(clean: Path) -> None:
    from fedskip.data.readers import read_sites

    for site_dir in sorted((clean / "ner").iterdir()):
        with (site_dir / "patients.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        stems = sorted(p.stem for p in (site_dir / "txt").glob("*.txt"))
        assert sorted(r["record"] for r in rows) == stems
        notes: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            notes[r["patient"]].append(r["record"])
        assert sum(len(v) > 1 for v in notes.values()) >= len(notes) // 3, site_dir.name
        for records in (v for v in notes.values() if len(v) > 1):
            concepts = [
                {
                    t
                    for t, *_ in parse_con(
                        site_dir / "txt" / f"{r}.txt", site_dir / "concept" / f"{r}.con"
                    )
                }
                for r in records
            ]
            assert set.intersection(*concepts), f"{records}: notes of one patient share no concept"
    ner = read_sites(clean / "ner")
    for ds in ner.values():
        patients = {d.patient_id for d in ds.documents}
        assert None not in patients and len(patients) < len(ds.documents)


def test_notes_have_dated_sections(clean: Path) -> None:
    kinds: Counter[str] = Counter()
    for txt, _, _ in note_files(clean):
        lines = [line.lower() for line in txt.read_text(encoding="utf-8").split("\n")]
        headers = [line for line in lines if line.endswith(":") or re.match(r"^[a-z /&]+ : ", line)]
        assert len(headers) >= 3, txt
        if lines[0] == "admission date :":
            kinds["discharge"] += 1
            assert lines[2] == "discharge date :" and any("course" in h for h in headers), txt
        elif "progress" in lines[0] or "interval" in lines[0]:
            kinds["progress"] += 1
        else:
            kinds["admission"] += 1
            assert any("history of" in h or "hpi" in h for h in headers), txt
    assert all(kinds[k] >= 20 for k in ("discharge", "admission", "progress")), kinds


def test_entity_segs_keep_every_prefix_inside_the_span() -> None:
    from fedskip.data.synth.text import entity_segs

    segs = entity_segs("her|severe|chest pain", "problem")
    assert [(s.text, s.type) for s in segs] == [("her severe chest pain", "problem")]
    assert [(s.text, s.type) for s in entity_segs("cxr", "test")] == [("cxr", "test")]


@pytest.mark.parametrize(
    ("word", "article"),
    [("mri", "an"), ("ekg", "an"), ("cxr", "a"), ("infiltrate", "an"), ("rash", "a")],
)
def test_articles_agree_by_sound(word: str, article: str) -> None:
    from fedskip.data.synth.text import _article

    assert _article(word) == article


def test_no_internal_markup_reaches_the_files(corpus: Path) -> None:
    for path in sorted(corpus.rglob("*")):
        if path.suffix in (".txt", ".csv") and path.name != "README.txt":
            text = path.read_text(encoding="utf-8")
            assert "|" not in text and "{" not in text and "~" not in text, path


def test_discharge_summaries_mention_their_coded_diagnoses(clean: Path) -> None:
    from fedskip.data.synth.icd9 import ICD9

    site = clean / "classification" / "site-1"
    with (site / "DIAGNOSES_ICD.csv").open(newline="") as fh:
        codes: dict[str, list[str]] = defaultdict(list)
        for row in csv.DictReader(fh):
            codes[row["HADM_ID"]].append(row["ICD9_CODE"])
    with (site / "NOTEEVENTS.csv").open(newline="") as fh:
        summaries = [
            r
            for r in csv.DictReader(fh)
            if r["CATEGORY"] == "Discharge summary" and not r["ISERROR"]
        ]
    assert len(summaries) >= 20
    hits = [
        sum(any(p in r["TEXT"].lower() for p in ICD9[c][2]) for c in codes[r["HADM_ID"]])
        / len(codes[r["HADM_ID"]])
        for r in summaries
    ]
    assert sum(hits) / len(hits) > 0.6
