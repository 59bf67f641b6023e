"""One entry point for every on-disk format, and for folders of hospital sites.

``read_dataset(path, fmt)`` picks the reader (``auto`` detects it from the files);
``read_sites(path, fmt)`` reads ``DIR/site-1``, ``DIR/site-2``, ... (what ``fedskip data synth``
writes) as one dataset per site, or ``path`` as a single site.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fedskip.config import DATA_FORMATS, LABELS
from fedskip.data.hf import is_hf_folder, read_hf
from fedskip.data.types import ClsDataset, Dataset, NerDocument
from fedskip.errors import DataError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".txt", ".ann", ".con", ".conll", ".bio", ".jsonl", ".csv", ".gz", ".parquet")


def _has_i2b2_layout(folder: Path) -> bool:
    return (folder / "txt").is_dir() and any((folder / d).is_dir() for d in ("concept", "concepts"))


def _pass_format(allowed: str) -> str:
    return f"pass --data-format (config key data-format): one of {allowed}"


def detect_format(path: Path) -> str:
    """The format of a file or folder, from names and suffixes; a DataError when unclear."""
    allowed = ", ".join(f for f in DATA_FORMATS if f != "auto")
    if path.is_file():
        name = path.name.lower()
        for endings, fmt in (
            ((".jsonl",), "jsonl"),
            ((".conll", ".bio"), "conll"),
            ((".csv", ".csv.gz"), "mimic"),
            ((".parquet",), "hf"),
        ):
            if name.endswith(endings):
                return fmt
        raise DataError(f"{path}: cannot detect the format of this file; {_pass_format(allowed)}")
    if _has_i2b2_layout(path):
        return "i2b2"
    if is_hf_folder(path):
        return "hf"
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    names = {p.name.lower() for p in path.iterdir() if p.is_file()}
    if ".con" in suffixes:
        return "i2b2"
    if ".ann" in suffixes:
        return "brat"
    if names & {"noteevents.csv", "noteevents.csv.gz"}:
        return "mimic"
    if ".jsonl" in suffixes:
        return "jsonl"
    if suffixes & {".conll", ".bio"}:
        return "conll"
    raise DataError(
        f"{path}: cannot detect the dataset format in this folder; {_pass_format(allowed)}"
    )


def read_dataset(
    path: str | Path, fmt: str = "auto", *, label: str = "category", icd9_top_k: int | None = 10
) -> Dataset:
    """Read one dataset. ``fmt``: auto, i2b2, brat, mimic, conll, jsonl or hf; ``label`` and
    ``icd9_top_k`` apply to MIMIC-III (``icd9_top_k=None`` keeps every ICD-9 code). An unknown
    format, a missing path or a dataset without documents raises :class:`fedskip.errors.DataError`.
    """
    if fmt not in DATA_FORMATS:
        raise DataError(f"unknown data format {fmt!r}; allowed: {', '.join(DATA_FORMATS)}")
    if label not in LABELS:
        raise DataError(f"unknown label {label!r}; allowed: {', '.join(LABELS)}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if fmt == "auto":
        fmt = detect_format(p)
    dataset = _read(p, fmt, label, icd9_top_k)
    if not dataset.documents:
        raise DataError(f"{p}: empty dataset (no documents, format {fmt})")
    _warn_empty_notes(dataset)
    return dataset


EMPTY_SHOWN = 3
"""How many empty notes the dataset warning names."""


def _warn_empty_notes(dataset: Dataset) -> None:
    """A warning naming the notes without a word: nothing to learn from or score in them (an
    evaluation of empty notes alone reports F1 0, which measures nothing)."""
    empty = [
        d.meta.get("file", d.doc_id)
        for d in dataset.documents
        if not d.text.strip() or (isinstance(d, NerDocument) and not any(d.sentences))
    ]
    if empty:
        more = f" and {len(empty) - EMPTY_SHOWN} more" if len(empty) > EMPTY_SHOWN else ""
        dataset.warnings.append(
            f"{dataset.source}: {len(empty)} empty note(s) without a word, nothing to learn or "
            f"score in them: {', '.join(empty[:EMPTY_SHOWN])}{more}"
        )


def _read(path: Path, fmt: str, label: str, top_k: int | None) -> Dataset:
    if fmt == "i2b2":
        from fedskip.data.i2b2 import read_i2b2

        return read_i2b2(path)
    if fmt == "brat":
        from fedskip.data.brat import read_brat

        return read_brat(path)
    if fmt == "mimic":
        from fedskip.data.mimic import read_mimic

        return read_mimic(path, label=label, top_k=top_k)
    if fmt == "conll":
        from fedskip.data.conll import read_conll

        return read_conll(path)
    if fmt == "hf":
        return read_hf(path)
    from fedskip.data.jsonl import read_jsonl

    return read_jsonl(path)


def is_sites_folder(path: Path) -> bool:
    """True for a folder with no dataset files of its own but with subfolders (one per site)."""
    if not path.is_dir() or _has_i2b2_layout(path) or is_hf_folder(path):
        return False
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.name.lower().endswith(DATA_SUFFIXES) for p in entries):
        return False
    return any(p.is_dir() for p in entries)


def site_name(path: Path) -> str:
    """The name a single dataset gets as a site: the folder name or the file name sans suffix."""
    if path.is_dir():
        return path.name
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return Path(name).stem


def read_sites(
    path: str | Path, fmt: str = "auto", *, label: str = "category", icd9_top_k: int = 10
) -> dict[str, Dataset]:
    """One dataset per site subfolder (sorted by name), or ``{name: dataset}`` for one dataset.

    Every document's ``site`` is set to its site name. For MIMIC-III ``label="icd9"`` the
    top-k codes are counted over all sites together, so every site has the same k labels.
    An empty site, or sites of different tasks, raise DataError.
    """
    p = Path(path)
    if not is_sites_folder(p):
        dataset = read_dataset(p, fmt, label=label, icd9_top_k=icd9_top_k)
        return {site_name(p): _tag(dataset, site_name(p))}
    folders = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    formats = {}
    for sub in folders:
        if not any(sub.iterdir()):
            raise DataError(f"{sub}: empty site folder (no dataset files)")
        if is_sites_folder(sub):
            raise DataError(
                f"{sub}: holds site folders itself; pass {sub} (or a sibling) as the data path"
            )
        formats[sub.name] = detect_format(sub) if fmt == "auto" else fmt
    pooled_icd9 = label == "icd9" and set(formats.values()) == {"mimic"}
    top_k = None if pooled_icd9 else icd9_top_k
    sites = {
        sub.name: _tag(
            read_dataset(sub, formats[sub.name], label=label, icd9_top_k=top_k), sub.name
        )
        for sub in folders
    }
    if pooled_icd9:
        from fedskip.data.mimic import select_top_codes

        select_top_codes([ds for ds in sites.values() if isinstance(ds, ClsDataset)], icd9_top_k)
        for name, ds in sites.items():
            if not ds.documents:
                raise DataError(
                    f"{p / name}: empty site (no discharge summary has a top-{icd9_top_k} code)"
                )
    tasks = {name: ds.task for name, ds in sites.items()}
    if len(set(tasks.values())) > 1:
        listing = ", ".join(f"{n}={t}" for n, t in tasks.items())
        raise DataError(f"{p}: sites hold different tasks ({listing})")
    return sites


def _tag(dataset: Dataset, site: str) -> Dataset:
    for doc in dataset.documents:
        doc.site = site
    return dataset


def log_warnings(sites: dict[str, Dataset]) -> None:
    """Log every site's reader warnings (dropped notes, entities widened to whole words...) at
    WARNING on ``fedskip.data.readers``: the commands that train or evaluate show them on the
    console, ``data inspect`` prints them itself."""
    for dataset in sites.values():
        for warning in dataset.warnings:
            log.warning("%s", warning)
