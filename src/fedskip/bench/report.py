"""Reports: ``results.md``/``results.csv`` for a bench suite, ``report.md`` for any run dirs.

Both are computed from the run directories on disk, so re-rendering after more configs finished
(or after a run was repeated) always shows the current numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedskip.bench import plots
from fedskip.bench.choice import Choice, choices_markdown, choose_on_validation
from fedskip.bench.claims import check_claims, check_claims_at, claims_markdown, half_the_blocks
from fedskip.bench.pareto import frontier_section
from fedskip.bench.personalization import personalization_sections, run_section
from fedskip.bench.records import RunRecord, load_run, load_runs
from fedskip.bench.runner import LOG_FILE, SUITE_FILE, read_manifest, run_path, settings_line
from fedskip.bench.spec import METHOD_ORDER
from fedskip.bench.table import (
    ResultRow,
    build_rows,
    collapse_seeds,
    fmt,
    markdown_table,
    with_spread,
    write_csv,
)
from fedskip.errors import ConfigError

PLOTS = "plots"


def _order(records: Sequence[RunRecord]) -> list[RunRecord]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(records, key=lambda r: (r.task, rank.get(r.method, len(rank)), r.name))


def _image(path: Path | None, base: Path, alt: str) -> list[str]:
    return [f"![{alt}]({path.relative_to(base).as_posix()})", ""] if path is not None else []


def _curve_section(records: Sequence[RunRecord], out: Path, tag: str) -> list[str]:
    """Metric vs round and vs cumulative MB for each task among ``records``."""
    lines: list[str] = []
    for task in dict.fromkeys(r.task for r in records):
        group = [r for r in records if r.task == task]
        for x, what in (("round", "round"), ("mb", "cumulative MB")):
            path = plots.plot_curves(
                group,
                out / PLOTS / f"{tag}{task}-metric-vs-{x}.png",
                x=x,
                title=f"{task}: {group[0].metric_name} vs {what}",
            )
            lines += _image(path, out, f"{task} metric vs {what}")
    return lines


# --------------------------------------------------------------------------- ad-hoc report
def render_report(
    run_dirs: Sequence[str | Path], out: str | Path, *, baseline: str | Path | None = None
) -> Path:
    """Write ``OUT/report.md`` (+ ``OUT/plots/*.png``) comparing one or more run directories:
    per-run table (final/best metric, gap to a centralized run among them — or to ``baseline``,
    a run directory, for the runs of its task —, MB, reduction versus a FedAvg run among them
    or else the run's own figure, rounds to 95% of best) and learning curves. Returns the path
    of ``report.md``."""
    if not run_dirs:
        raise ConfigError("fedskip report: give at least one run directory")
    for path in run_dirs:
        _refuse_bench_folder(Path(path))
    records = _order(load_runs(run_dirs))
    base = None if baseline is None else _baseline_record(records, Path(baseline))
    records = _order(records)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = build_rows(records)
    for row in rows:  # without a FedAvg run: the figure the run printed (its summary.json's)
        row.reduction = row.analytic_reduction if row.reduction is None else row.reduction
    if base is not None:
        _gaps_versus(rows, next(r for r in rows if r.name == base.name))
    write_csv(rows, folder / "report.csv")
    lines = ["# fedskip report", ""]
    columns = ["run", "method", "task", "k", "partition", *SCORE_COLUMNS, "ε spent", "s"]
    lines += [markdown_table(rows, columns), ""]
    lines += [
        f"- `{r.name}`: {r.path}" + ("" if r.complete else " (no summary.json: unfinished)")
        for r in records
    ]
    if base is not None:
        lines += ["", f"Gaps of the {base.task} runs are versus `{base.name}` (--baseline)."]
    lines += ["", _legend(), REPORT_REDUCTION, ""]
    lines += _audit_section(records)
    lines += run_section(records)  # [personalize] per-site own-model figures
    lines += ["## Learning curves", ""]
    lines += _curve_section(records, folder, "")
    path = folder / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n", "utf-8")
    return path


REPORT_REDUCTION = (
    "A run compared with no FedAvg run shows its own reduction (summary.json's, as its console "
    "printed it): versus full-model FedAvg over the same rounds and clients."
)


def _refuse_bench_folder(path: Path) -> None:
    """A bench folder (``suite.json`` and ``runs/``) is rendered by ``fedskip bench``: say so."""
    if (path / SUITE_FILE).is_file() and not (path / "config.json").is_file():
        suite = read_manifest(path).get("suite", "NAME")
        raise ConfigError(
            f"{path}: a bench folder ({SUITE_FILE}, runs/), not a run directory; render its "
            f"results with `fedskip bench --suite {suite} --out {path} --report-only`, or "
            f"compare its runs with `fedskip report {path}/runs/*`"
        )


def _baseline_record(records: list[RunRecord], path: Path) -> RunRecord:
    """The ``--baseline`` run: one of ``records`` (same folder) or loaded and appended to them."""
    found = next((r for r in records if r.path.resolve() == path.resolve()), None)
    if found is None:
        found = load_run(path)
        if any(r.name == found.name for r in records):
            raise ConfigError(
                f"--baseline {path}: another run given is also named '{found.name}'; pass the "
                "baseline among the run directories"
            )
        records.append(found)
    if found.final is None:
        raise ConfigError(
            f"--baseline {path}: the run has no test score (unfinished or without evaluation); "
            "pick a finished run"
        )
    return found


def _gaps_versus(rows: Sequence[ResultRow], base: ResultRow) -> None:
    """Every row of ``base``'s task gets its gap in points versus ``base`` (others keep theirs)."""
    for row in rows:
        if row.task == base.task and row.score is not None and base.score is not None:
            row.gap_points = 100.0 * (row.score - base.score)


def _audit_section(records: Sequence[RunRecord]) -> list[str]:
    """Audit runs (``audit-canaries``): the empirical ε lower bound beside the accountant's ε."""
    from fedskip.audit import audit_lines

    audited = [r for r in records if isinstance(r.summary.get("audit"), dict)]
    if not audited:
        return []
    lines = ["## Privacy audit", ""]
    for record in audited:
        lines.append(f"- `{record.name}` (audit run: its model has seen canary notes)")
        lines += [f"  - {line}" for line in audit_lines(dict(record.summary))]
    lines += [
        "",
        "The audit ε is a lower bound that holds with the stated confidence; the accountant's ε "
        "is an upper bound. The true ε lies between them (docs/privacy.md).",
        "",
    ]
    return lines


def _legend() -> str:
    return (
        "Metric (named in each task's heading): strict entity F1 (NER), micro F1 over the codes "
        "(multi-label ICD-9 coding) or macro F1 (single-label classification), on the global "
        "test set. "
        "Gap: points (×100) versus the centralized run of the same task; reduction: 1 − the "
        "run's measured bytes / those of the FedAvg run of the same task and seed, each over "
        "all the rounds it trained (a run that trains more rounds moves more); "
        "MB = 10⁶ bytes, up + down; "
        "rounds to 95%: first round/epoch reaching 95% of the run's best. "
        "ε spent: per patient (or note, example, hospital — the run's privacy unit) at the "
        "run's δ."
    )


# --------------------------------------------------------------------------- suite results
def load_suite(out: str | Path) -> tuple[dict[str, Any], list[RunRecord]]:
    """The manifest and the records of every config of the suite that has a run directory."""
    folder = Path(out)
    manifest = read_manifest(folder)
    records = []
    for entry in manifest["configs"]:
        path = run_path(folder, entry["name"])
        if (path / "config.json").is_file():
            records.append(load_run(path))
    return manifest, records


def _groups_and_labels(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each config's groups and labels, by run name, as the suite's manifest lists them."""
    groups = {c["name"]: c["groups"] for c in manifest["configs"]}
    labels = {c["name"]: c["labels"] for c in manifest["configs"]}
    return groups, labels


def _chosen_rows(
    finished: list[RunRecord], groups: dict[str, Any], labels: dict[str, Any]
) -> tuple[list[RunRecord], list[Choice], list[ResultRow]]:
    """The runs that count (one per configuration and seed, chosen on validation among its
    candidates), the choices made, and their result rows (one per run, seeds not merged)."""
    chosen, choices = choose_on_validation(finished, labels)
    return chosen, choices, build_rows(chosen, groups, labels)


def write_results(out: str | Path) -> Path:
    """``results.csv``, ``results.md`` and ``plots/`` of the bench folder ``out``."""
    folder = Path(out)
    manifest, records = load_suite(folder)
    finished = [r for r in records if r.complete]  # running or failed ones: "Not finished"
    groups, labels = _groups_and_labels(manifest)
    chosen, choices, rows = _chosen_rows(finished, groups, labels)
    write_csv(rows, folder / "results.csv")  # one row per configuration and seed
    shown = collapse_seeds(rows)  # tables: one row per configuration, mean ± std over seeds
    lines = _suite_header(manifest, records)
    lines += _methods_section(chosen, shown, folder)
    lines += _gaps_section(shown)
    lines += _ablation_sections(shown, folder)
    lines += personalization_sections(finished, groups, labels, folder)
    lines += choices_markdown(choices)
    lines += _missing_section(manifest, records)
    lines += ["## The paper's claims on our data", "", claims_markdown(check_claims(rows)), ""]
    lines += _claims_at_half(rows)
    path = folder / "results.md"
    path.write_text("\n".join(lines).rstrip() + "\n", "utf-8")
    return path


def _claims_at_half(rows: Sequence[ResultRow]) -> list[str]:
    """The claims again at the paper's operating point, half the blocks (its 8 of 16), when the
    layer axis ran that k and it is not the suite's default."""
    k = half_the_blocks(rows)
    default = {r.layers for r in rows if r.method == "layerskip" and "methods" in r.groups.split()}
    if (
        k is None
        or k in default
        or not any(r.layers == k and r.method == "layerskip" for r in rows)
    ):
        return []
    return [
        f"### At half the blocks: k = {k} (the paper's operating point, 8 of 16)",
        "",
        f"The claims that rest on layer skipping's own runs, judged on the layer axis's k = {k} "
        "run and its seeds instead of the methods group's; non-IID and privacy ran at the "
        "suite's default k only.",
        "",
        claims_markdown(check_claims_at(rows, k)),
        "",
    ]


RECORD_FILES = ("config.json", "metrics.jsonl", "summary.json", "error.txt")
"""What :func:`publish` copies of each run: the records, not the model or checkpoints."""
ENDED_FILES = ("summary.json", "error.txt")
"""A run with one of these has ended (finished or failed); :func:`publish` skips the others."""


def publish(out: str | Path, dest: str | Path) -> Path:
    """Copy a bench folder's records (``suite.json``, ``bench.log`` and each ended run's
    :data:`RECORD_FILES`; a run still training is left out) to ``dest`` and render the results
    there: a few hundred kB that can be committed, from which
    ``fedskip bench --report-only --out DEST`` re-renders the same page."""
    import shutil

    source, target = Path(out), Path(dest)
    manifest = read_manifest(source)
    target.mkdir(parents=True, exist_ok=True)
    for name in (SUITE_FILE, LOG_FILE):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    for entry in manifest["configs"]:
        run = run_path(source, entry["name"])
        if not any((run / name).is_file() for name in ENDED_FILES):
            continue  # still training (or never started): its records are not final
        for name in RECORD_FILES:
            if (run / name).is_file():
                run_path(target, entry["name"]).mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, run_path(target, entry["name"]) / name)
    return write_results(target)


HEADLINE_COLUMNS = ["method", "final", "gap (pts)", "MB", "reduction"]


def write_headline(out: str | Path, dest: str | Path) -> Path:
    """A short Markdown section for a README: the methods table of the suite's first task
    (method, final metric, gap to centralized, MB, reduction vs FedAvg), its metric-vs-MB plot
    and the command that made them. Links are relative to the current directory (run it from
    the repository root)."""
    import os

    folder = Path(out)
    manifest, records = load_suite(folder)
    finished = [r for r in records if r.complete]
    _, _, rows = _chosen_rows(finished, *_groups_and_labels(manifest))
    rows = [r for r in rows if "methods" in r.groups.split()]
    rows = collapse_seeds(rows)  # one row per method: mean ± std over its seeds
    if not rows:
        raise ConfigError(f"{folder}: no finished run of the methods group to summarize")
    task = rows[0].task
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    table_rows = sorted((r for r in rows if r.task == task), key=lambda r: rank.get(r.method, 99))
    plot = folder / PLOTS / f"{task}-metric-vs-mb.png"
    command = f"fedskip bench --suite {manifest['suite']} --out OUT --publish {folder}"
    if manifest.get("overrides"):
        command += " --set " + settings_line(manifest["overrides"])
    lines = [
        f"### Results on the synthetic corpus ({task}, `{manifest['suite']}` suite)",
        "",
        markdown_table(table_rows, HEADLINE_COLUMNS),
        "",
        f"`final`: {table_rows[0].metric} on the global test set (of the model chosen on the "
        "validation split, where the run has one; mean ± std over seeds, where there are "
        "several); gap in points versus centralized training; MB exchanged over the run "
        "(up + down); reduction versus full "
        f"FedAvg. Every number comes from `{folder / 'results.csv'}`; all tables, plots and the "
        f"paper's claims checked on them: [{folder / 'results.md'}]({folder / 'results.md'}).",
        "",
        f"![{task}: metric vs MB exchanged]({os.path.relpath(plot)})" if plot.is_file() else "",
        "",
        f"Made with: `{command}`",
    ]
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", "utf-8")
    return path


def _suite_header(manifest: dict[str, Any], records: Sequence[RunRecord]) -> list[str]:
    command = f"fedskip bench --suite {manifest['suite']} --out OUT"
    if manifest.get("overrides"):
        command += " --set " + settings_line(manifest["overrides"])
    done = sum(r.complete for r in records)
    spent = sum(r.seconds or 0.0 for r in records if r.complete)
    return [
        f"# fedskip bench: suite `{manifest['suite']}`",
        "",
        f"{manifest['description']}.",
        "",
        f"Reproduce: `{command}` ({done} of {len(manifest['configs'])} configs finished; "
        f"their wall time in all: {spent:,.0f} s = {spent / 3600:.1f} h, each run's in its "
        "table's `s` column).",
        "",
        f"Shared settings: `{settings_line(manifest['settings'])}`"
        + (
            f", overridden by `{settings_line(manifest['overrides'])}`."
            if manifest.get("overrides")
            else "."
        ),
        "",
        _legend(),
        "",
    ]


def _in(rows: Sequence[ResultRow], group: str) -> list[ResultRow]:
    return [r for r in rows if group in r.groups.split()]


def _methods_section(
    records: Sequence[RunRecord], rows: Sequence[ResultRow], out: Path
) -> list[str]:
    lines = ["## Methods", ""]
    chosen = _in(rows, "methods")
    names = {r.name for r in chosen}
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    for task in dict.fromkeys(r.task for r in chosen):  # suite order: the ablation task first
        task_rows = sorted(
            (r for r in chosen if r.task == task), key=lambda r: rank.get(r.method, 99)
        )
        lines += [f"### {task} ({task_rows[0].metric})", "", markdown_table(task_rows), ""]
    lines += _curve_section([r for r in records if r.name in names], out, "")
    return lines


def _gaps_section(rows: Sequence[ResultRow]) -> list[str]:
    """Per layer-skipping k with a centralized same-blocks run (``gaps`` group): the federation
    gap (federated − centralized, same blocks) and the capacity gap (centralized same blocks −
    centralized full fine-tuning), in points."""
    same = {
        (r.task, r.layers, r.strategy): r for r in _in(rows, "gaps") if r.method == "centralized"
    }
    if not same:
        return []
    full = {r.task: r for r in _in(rows, "methods") if r.method == "centralized"}
    skips = [
        r
        for r in rows
        if r.method == "layerskip" and {"methods", "layers", "strategies"} & set(r.groups.split())
    ]
    lines = [
        "## Federation gap and capacity gap",
        "",
        "| task | k | federated | centralized, same blocks | centralized, full | "
        "federation gap (pts) | capacity gap (pts) |",
        "|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for skip in sorted(skips, key=lambda r: (r.task, r.layers or 0, r.strategy != "top")):
        key = (skip.task, skip.layers, skip.strategy)
        central = same.get(key)
        if central is None or key in seen or skip.score is None or central.score is None:
            continue
        seen.add(key)
        base = full.get(skip.task)
        federation = 100.0 * (skip.score - central.score)
        capacity = (
            None if base is None or base.score is None else 100 * (central.score - base.score)
        )
        cells = [
            skip.task,
            str(skip.layers) + ("" if skip.strategy == "top" else f" ({skip.strategy})"),
            with_spread(skip, "score", fmt(skip.score)),
            with_spread(central, "score", fmt(central.score)),
            "–" if base is None else with_spread(base, "score", fmt(base.score)),
            fmt(federation, ".1f", signed=True),
            fmt(capacity, ".1f", signed=True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", "Gaps are differences of the means over seeds.", ""]


SCORE_COLUMNS = ["final", "best", "gap (pts)", "MB", "reduction", "rounds to 95%"]
"""What every results table shows of a run's scores and traffic."""
ABLATION_COLUMNS = ["run", "k", *SCORE_COLUMNS, "s"]


@dataclass(frozen=True)
class Axis:
    """A categorical ablation axis of the results page: its group, the label key it varies, the
    x order of its plot and the table columns."""

    group: str
    key: str
    order: tuple[Any, ...]
    xlabel: str
    title: str
    png: str
    columns: tuple[str, ...]


AXES = (
    Axis(
        "noniid",
        "partition",
        ("iid", "dir1", "dir0.3", "dir0.1", "natural"),
        "partition (IID → most skewed, then by site)",
        "Non-IID partitions",
        "noniid.png",
        ("run", "method", "partition", "final", "best", "gap (pts)", "MB", "s"),
    ),
    Axis(
        "privacy",
        "target_epsilon",
        (0, 8.0, 4.0, 2.0, 1.0),
        "target ε per patient (DP-SGD)",
        "Differential privacy",
        "privacy.png",
        ("run", "privacy variant", "ε target", "ε spent", "final", "best", "gap (pts)", "s"),
    ),
    Axis(
        "client-dp",
        "target_epsilon",
        (0, 8.0, 4.0, 2.0, 1.0),
        "target ε per client (client-level DP-FedAvg)",
        "Client-level differential privacy",
        "client-dp.png",
        ("run", "method", "ε target", "ε spent", "final", "best", "gap (pts)", "s"),
    ),
)


def _ablation_sections(rows: Sequence[ResultRow], out: Path) -> list[str]:
    lines: list[str] = []
    layer_rows = sorted(_in(rows, "layers"), key=lambda r: r.layers or 0)
    if layer_rows:
        lines += ["## Layer count k", "", markdown_table(layer_rows, ABLATION_COLUMNS), ""]
        lines += _image(plots.plot_layers(layer_rows, out / PLOTS / "layers.png"), out, "k")
    strategy_rows = _in(rows, "strategies")
    if strategy_rows:
        table = markdown_table(strategy_rows, ["run", "strategy", *ABLATION_COLUMNS[1:]])
        lines += ["## Layer-selection strategy", "", table, ""]
    for axis in AXES:
        chosen = _in(rows, axis.group)
        if not chosen:
            continue
        order = _with_extra(list(axis.order), [r.extra.get(axis.key) for r in chosen])
        lines += [f"## {axis.title}", "", markdown_table(chosen, axis.columns), ""]
        path = plots.plot_axis(
            chosen,
            out / PLOTS / axis.png,
            key=axis.key,
            order=order,
            xlabel=axis.xlabel,
            title=axis.title,
        )
        lines += _image(path, out, axis.title)
    return lines + frontier_section(rows, out, PLOTS)


def _with_extra(order: list[Any], values: Sequence[Any]) -> list[Any]:
    """``order`` plus any axis value not in it (a suite with other α or ε), in first-seen order."""
    extra = [v for v in dict.fromkeys(values) if v is not None and v not in order]
    return [*order, *extra]


def _missing_section(manifest: dict[str, Any], records: Sequence[RunRecord]) -> list[str]:
    finished = {r.name for r in records if r.complete}
    missing = [c["name"] for c in manifest["configs"] if c["name"] not in finished]
    if not missing:
        return []
    return [
        "## Not finished",
        "",
        "Configs without a summary.json (not run yet, or failed — "
        "see `runs/<name>/error.txt`) or with rounds that failed for lack of valid replies "
        "(`failed_rounds` in its summary.json): " + ", ".join(f"`{m}`" for m in missing) + ".",
        "",
    ]
