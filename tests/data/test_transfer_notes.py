"""The hand-written transfer notes (tests/fixtures/transfer-notes): realistic discharge-summary
sentences annotated per the i2b2 2010 guidelines, read by the real reader and checked here with
an independent parser. No real patient data: every note was written for fedskip."""

from __future__ import annotations

import csv
import re
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "transfer-notes"
CON = re.compile(r'^c="(.+)" (\d+):(\d+) (\d+):(\d+)\|\|t="(problem|test|treatment)"$')


def concepts(stem: str) -> list[tuple[str, int, int, int, str]]:
    lines = (FOLDER / "txt" / f"{stem}.txt").read_text(encoding="utf-8").split("\n")
    out = []
    for raw in (FOLDER / "concept" / f"{stem}.con").read_text(encoding="utf-8").splitlines():
        m = CON.match(raw)
        assert m, raw
        text, l1, s, l2, e, kind = m.groups()
        assert l1 == l2
        tokens = lines[int(l1) - 1].split(" ")
        assert " ".join(tokens[int(s) : int(e) + 1]).lower() == text, raw
        out.append((text, int(l1), int(s), int(e), kind))
    return out


def test_the_transfer_notes_follow_the_guidelines() -> None:
    stems = sorted(p.stem for p in (FOLDER / "txt").glob("*.txt"))
    assert len(stems) >= 10
    texts = [c[0] for stem in stems for c in concepts(stem)]
    assert sum(t.split(" ", 1)[0] in ("a", "an", "the", "his", "her") for t in texts) >= 20
    for stem in stems:
        problems = [
            raw.split("||t=")[0]
            for raw in (FOLDER / "concept" / f"{stem}.con").read_text().splitlines()
            if raw.endswith('t="problem"')
        ]
        asts = (FOLDER / "ast" / f"{stem}.ast").read_text().splitlines()
        assert [a.split("||t=")[0] for a in asts] == problems
    with (FOLDER / "patients.csv").open(newline="") as fh:
        assert sorted(r["record"] for r in csv.DictReader(fh)) == stems


def test_the_reader_reads_every_transfer_concept() -> None:
    from fedskip.data.readers import read_dataset

    ds = read_dataset(FOLDER, "i2b2")
    stems = sorted(p.stem for p in (FOLDER / "txt").glob("*.txt"))
    assert len(ds.documents) == len(stems) and ds.dropped_overlaps == 0
    assert sum(ds.entity_counts().values()) == sum(len(concepts(s)) for s in stems)
    assert len({d.patient_id for d in ds.documents}) == len(stems) - 1  # one patient, two notes
