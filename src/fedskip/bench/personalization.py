"""The ``personalization`` group: is a site better served by its own head than by the global
model, or by training alone? Per-site tables and a plot from the finished runs.

Its configs (:func:`fedskip.bench.groups.personalization_configs`; ``paper`` suite, ablation task, natural and Dirichlet α = 0.1 partitions): layer
skipping with ``personalize=none`` and with ``personalize=head`` (both with the sites scoring on
their own test splits, ``eval-clients=true``), and local-only training on the same partition.
Per site, on the site's own test split:

- **local-only**: the site's model trained alone (``own_test`` of the local-only summary);
- **global**: the federation's model without personalization (the row's ``site_eval``);
- **personalized**: the site's own model of the ``personalize=head`` run (shared blocks + its
  head), beside that run's global model (shared blocks + the seeded head: what the coordinator
  exports).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedskip.bench.groups import PERSONALIZATION_GROUP
from fedskip.bench.records import RunRecord

COLUMNS = ("local-only", "global", "personalized", "shared + seeded head")


# --------------------------------------------------------------------------- per-site figures
def site_table(
    records: Sequence[RunRecord], labels: Mapping[str, Mapping[str, Any]], partition: str
) -> dict[str, dict[str, float | None]]:
    """Site → :data:`COLUMNS` → the primary metric, for one partition label (``None``: that run
    has not finished or has no figure for the site)."""
    table: dict[str, dict[str, float | None]] = {}

    def put(site: str, column: str, scores: Mapping[str, Any], metric: str) -> None:
        value = scores.get(metric)
        row = table.setdefault(site, dict.fromkeys(COLUMNS))
        row[column] = float(value) if isinstance(value, (int, float)) else None

    for record in records:
        label = labels.get(record.name, {})
        if label.get("partition") != partition:
            continue
        metric, mode = record.metric_name, label.get("personalize")
        if mode == "local":
            for site in record.summary.get("sites") or []:
                put(
                    str(site.get("site", site.get("client"))),
                    COLUMNS[0],
                    site.get("own_test") or {},
                    metric,
                )
        elif mode == "none":
            last = next((r for r in reversed(record.rows) if r.site_eval), None)
            for site, scores in (last.site_eval if last else {}).items():
                put(site, COLUMNS[1], scores, metric)
        elif mode:
            sites = (record.summary.get("personalization") or {}).get("sites") or {}
            for site, parts in sites.items():
                put(site, COLUMNS[2], parts.get("personal") or {}, metric)
                put(site, COLUMNS[3], parts.get("global") or {}, metric)
    return dict(sorted(table.items()))


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table_markdown(table: Mapping[str, Mapping[str, float | None]]) -> str:
    """The per-site table with a mean row (mean over the sites that have the figure)."""
    lines = ["| site | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for site, row in table.items():
        lines.append(f"| {site} | " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    means = []
    for column in COLUMNS:
        values = [v for row in table.values() if (v := row[column]) is not None]
        means.append(sum(values) / len(values) if values else None)
    lines.append("| **mean** | " + " | ".join(_cell(v) for v in means) + " |")
    return "\n".join(lines)


def plot_sites(
    table: Mapping[str, Mapping[str, float | None]], path: Path, *, title: str
) -> Path | None:
    """Grouped bars: each site's local-only, global and personalized figure."""
    if not table:
        return None
    from matplotlib.figure import Figure

    from fedskip.bench.plots import DPI

    fig = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    shown = COLUMNS[:3]
    width = 0.8 / len(shown)
    for i, column in enumerate(shown):
        xs = [j + (i - 1) * width for j in range(len(table))]
        ys = [row[column] or 0.0 for row in table.values()]
        ax.bar(xs, ys, width=width, label=column)
    ax.set_xticks(range(len(table)), list(table), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("metric on the site's own test split")
    ax.set_title(title)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def personalization_sections(
    records: Sequence[RunRecord],
    groups: Mapping[str, Sequence[str]],
    labels: Mapping[str, Mapping[str, Any]],
    out: Path,
) -> list[str]:
    """The results.md section of the group: per partition a per-site table and a plot. Only
    the group's own runs count: the local-only baseline's other seeds (methods group) carry
    its labels but are not part of this single-seed comparison."""
    mine = [
        r
        for r in records
        if PERSONALIZATION_GROUP in groups.get(r.name, ())
        and labels.get(r.name, {}).get("personalize")
    ]
    if not mine:
        return []
    lines = ["## Personalization (per site, own test split)", ""]
    for part in dict.fromkeys(str(labels[r.name]["partition"]) for r in mine):
        table = site_table(mine, labels, part)
        if not table:
            continue
        lines += [f"### {part}", "", table_markdown(table), ""]
        path = plot_sites(table, out / "plots" / f"personalization-{part}.png", title=part)
        if path is not None:
            lines += [f"![personalization {part}]({path.relative_to(out).as_posix()})", ""]
    lines += [
        "Local-only: each site alone; global: the federation without personalization; "
        "personalized: the site's shared blocks + its own head (personalize=head); shared + "
        "seeded head: that run's coordinator model (its head was never trained centrally).",
        "",
    ]
    return lines


def run_section(records: Sequence[RunRecord]) -> list[str]:
    """``fedskip report``: each personalized run's per-site own-model and global figures."""
    lines: list[str] = []
    for record in records:
        report = record.summary.get("personalization")
        if not isinstance(report, Mapping) or not report.get("sites"):
            continue
        metric = record.metric_name
        if not lines:
            lines = ["## Personalization (per site, own test split)", ""]
        lines += [
            f"`{record.name}` (personalize={report.get('mode')}, round {report.get('round')}):",
            "",
            f"| site | own model {metric} | global model {metric} |",
            "|---|---|---|",
        ]
        rows = {**report["sites"], "**mean**": report.get("mean") or {}}
        for site, parts in rows.items():
            own = (parts.get("personal") or {}).get(metric)
            shared = (parts.get("global") or {}).get(metric)
            lines.append(f"| {site} | {_cell(own)} | {_cell(shared)} |")
        lines.append("")
    return lines
