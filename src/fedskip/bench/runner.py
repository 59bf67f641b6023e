"""Run a suite: resolve every configuration, train the ones without a finished run directory,
then write the results table, plots and claims.

```
OUT/
  suite.json        the suite, its settings (after --set), every config with its groups
  bench.log         one line per config: trained / skipped / failed, with seconds
  runs/<name>/      one run directory per config (config.json, metrics.jsonl, summary.json, model/)
  results.csv       one row per config (see fedskip.bench.table)
  results.md        the tables, the plots and the paper's claims checked on these numbers
  plots/*.png
```

Each config is trained in-process by the same function its CLI command uses
(:func:`train_one`), one after the other. A config whose run directory already holds
``summary.json`` is skipped, so a suite can be run in pieces (``--only``) or resumed after an
interruption; a failed config is logged (``runs/<name>/error.txt``) and the suite goes on.
"""

from __future__ import annotations

import fnmatch
import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedskip.bench.expansion import expand, resolve
from fedskip.bench.records import finished
from fedskip.bench.spec import BenchConfig, Suite, describe
from fedskip.bench.suites import get_suite
from fedskip.config import Config, Scalar, parse_overrides, read_run_config
from fedskip.errors import ConfigError
from fedskip.records.schema import RunSummary

SUITE_FILE = "suite.json"
LOG_FILE = "bench.log"

SUITE_KEYS = ("task", "method", "partition", "alpha", "dp", "target-epsilon", "out")
"""Keys a suite varies itself; ``--set`` may not fix them for every config."""

Progress = Callable[[str], None]


def print_now(line: str) -> None:
    """Progress to stdout, flushed (a suite runs for hours, often with stdout in a file)."""
    print(line, flush=True)


@dataclass
class Plan:
    """A suite resolved against the user's overrides: base config and every run."""

    suite: Suite
    overrides: dict[str, str]
    base: Config
    num_blocks: int
    configs: list[BenchConfig]

    def config_for(self, entry: BenchConfig, out: Path) -> Config:
        settings: dict[str, Scalar] = {**entry.settings, "out": str(run_path(out, entry.name))}
        if "mlflow" in self.base.tracking_list() and not self.base.mlflow_uri:
            settings["mlflow-uri"] = mlflow_store(out)  # one store, one MLflow run per config
        return resolve(self.base, settings)

    def manifest(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "description": self.suite.description,
            "settings": self.suite.settings,
            "overrides": self.overrides,
            "num_blocks": self.num_blocks,
            "configs": describe(self.configs),
        }


@dataclass
class Outcome:
    name: str
    status: str  # "trained", "skipped", "failed"
    seconds: float = 0.0
    error: str = ""


@dataclass
class SuiteRun:
    out: Path
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_path(out: Path, name: str) -> Path:
    return out / "runs" / name


def mlflow_store(out: Path) -> str:
    """The suite's MLflow store (tracking=mlflow): ``OUT/mlflow.db``, every config's run in it."""
    from fedskip.tracking import MLFLOW_DB

    return f"sqlite:///{(out / MLFLOW_DB).resolve()}"


def num_blocks_of(model: str) -> int:
    """Transformer blocks of ``model`` (from its meta-device architecture; no weights)."""
    from fedskip.models.layers import discover_layers
    from fedskip.models.loading import build_meta_model

    return discover_layers(build_meta_model(model)).num_blocks


def plan_suite(name: str, overrides: Sequence[str] = ()) -> Plan:
    """Resolve suite ``name`` with ``--set`` pairs; raises ConfigError for bad keys/values."""
    suite = get_suite(name)
    pairs = parse_overrides(overrides)
    for key in pairs:
        if key.strip() in SUITE_KEYS:
            raise ConfigError(
                f"--set {key}: the suite varies '{key}' itself; keys it fixes for every run "
                f"cannot be set (not allowed: {', '.join(SUITE_KEYS)})"
            )
    base = Config.from_mapping(pairs, base=Config.from_mapping(suite.settings))
    blocks = num_blocks_of(base.model)
    configs = expand(suite, base, blocks)
    return Plan(suite, pairs, base, blocks, configs)


def select(configs: Sequence[BenchConfig], only: Sequence[str]) -> list[BenchConfig]:
    """Configs whose name or one of whose groups matches a pattern of ``only`` (shell globs)."""
    if not only:
        return list(configs)
    chosen = [c for c in configs if any(fnmatch.fnmatch(c.name, p) or p in c.groups for p in only)]
    if not chosen:
        raise ConfigError(
            f"--only {' '.join(only)}: matches no config (names look like "
            f"{configs[0].name if configs else 'ner-layerskip'}; groups: methods, layers, "
            "strategies, noniid, privacy)"
        )
    return chosen


# --------------------------------------------------------------------------- training
def train_one(cfg: Config) -> RunSummary:
    """Train one config with the run layer's entry for its method (what ``fedskip run`` uses:
    :func:`fedskip.runs.run`); returns the run's summary."""
    from fedskip.runs import run

    return run(cfg)


def _check_manifest(out: Path, plan: Plan) -> None:
    """A resumed suite must use the same settings, or its runs would not be comparable."""
    path = out / SUITE_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text("utf-8"))
    keys = ("suite", "settings", "overrides")
    if any(previous.get(k) != plan.manifest()[k] for k in keys):
        raise ConfigError(
            f"{path}: this folder holds suite {previous.get('suite')!r} with --set "
            f"{previous.get('overrides')}; resume with the same settings or use another --out"
        )


RUN_LOCAL_KEYS = frozenset({"out", "mlflow-uri", "resume"})
"""Config keys that name where a run was written or how it was started, not what it trained: a
run the suite resumed from its checkpoint (``_resumable``) records ``resume=true`` and is the
same config as one that ran straight through."""


def stale_settings(plan: Plan, out: Path, entry: BenchConfig) -> dict[str, tuple[Any, Any]]:
    """Key → (recorded, now) for each setting in which the finished run of ``entry`` differs
    from what the suite now says (empty: it matches, or the run has not finished). A key the
    run's ``config.json`` lacks was added to fedskip later: the run had its default."""
    run_dir = run_path(out, entry.name)
    if not _finished(run_dir) or not (run_dir / "config.json").is_file():
        return {}
    saved = json.loads((run_dir / "config.json").read_text("utf-8"))
    defaults = Config().to_run_config()
    now = plan.config_for(entry, out).to_run_config()
    return {
        key: (saved.get(key, defaults[key]), value)
        for key, value in now.items()
        if key not in RUN_LOCAL_KEYS and saved.get(key, defaults[key]) != value
    }


def _check_finished_runs(out: Path, plan: Plan, chosen: Sequence[BenchConfig]) -> None:
    """A finished run is skipped on resume, so it must still be the config the suite names:
    one trained before the suite's definition changed would be reported as the new one."""
    for entry in chosen:
        stale = stale_settings(plan, out, entry)
        if stale:
            diffs = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in stale.items())
            raise ConfigError(
                f"{run_path(out, entry.name)}: finished with {diffs}; the suite has changed "
                "since it ran. Remove that run directory to train it again, or use another --out"
            )


def check_publishable(name: str, out: str | Path, overrides: Sequence[str] = ()) -> None:
    """Before ``--publish``: the folder holds suite ``name`` with these settings and every
    finished run in it is still the config the suite names (the resume guard checks only the
    configs a resume selects). Raises :class:`ConfigError` naming the first stale run."""
    plan = plan_suite(name, overrides)
    folder = Path(out)
    _check_manifest(folder, plan)
    _check_finished_runs(folder, plan, plan.configs)


def run_suite(
    name: str,
    out: str | Path,
    overrides: Sequence[str] = (),
    *,
    only: Sequence[str] = (),
    progress: Progress = print_now,
    trainer: Callable[[Config], Mapping[str, Any]] = train_one,
) -> SuiteRun:
    """Train every config of suite ``name`` not yet finished under ``out``; see module doc."""
    from fedskip.tracking import require_backends

    plan = plan_suite(name, overrides)
    require_backends(plan.base)
    folder = Path(out)
    chosen = select(plan.configs, only)
    _check_manifest(folder, plan)
    _check_finished_runs(folder, plan, chosen)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUITE_FILE).write_text(json.dumps(plan.manifest(), indent=2) + "\n", "utf-8")
    result = SuiteRun(folder, plan)
    for index, entry in enumerate(chosen, start=1):
        outcome = _run_entry(plan, folder, entry, trainer)
        result.outcomes.append(outcome)
        line = f"[{index}/{len(chosen)}] {entry.name}: {outcome.status} ({outcome.seconds:.1f} s)"
        if outcome.error:
            line += f" — {outcome.error}"
        progress(line)
        with (folder / LOG_FILE).open("a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    return result


def _run_entry(
    plan: Plan, out: Path, entry: BenchConfig, trainer: Callable[[Config], Mapping[str, Any]]
) -> Outcome:
    run_dir = run_path(out, entry.name)
    if _finished(run_dir):
        return Outcome(entry.name, "skipped")
    cfg = _resumable(plan.config_for(entry, out), run_dir)
    started = time.perf_counter()
    try:
        summary = trainer(cfg)
    except Exception as exc:  # one failed config must not stop a suite of dozens
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(traceback.format_exc(), "utf-8")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Outcome(entry.name, "failed", time.perf_counter() - started, first)
    if not finished(summary or {}):  # it ended, but its numbers do not measure the config
        reason = f"rounds {summary['failed_rounds']} failed (too few valid replies; see {run_dir / 'run.log'})"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(reason + "\n", "utf-8")
        return Outcome(entry.name, "failed", time.perf_counter() - started, reason)
    (run_dir / "error.txt").unlink(missing_ok=True)
    return Outcome(entry.name, "trained", time.perf_counter() - started)


def _resumable(cfg: Config, run_dir: Path) -> Config:
    """``cfg`` resuming from the checkpoint an interrupted federated run of exactly this config
    left in ``run_dir`` (it ended without a ``summary.json``; its completed rounds are kept, as
    ``fedskip run --resume`` keeps them), else ``cfg`` as it is: a fresh run, which replaces
    whatever the folder holds (a run that ended with failed rounds is trained again)."""
    from fedskip.records.checkpoint import find_checkpoint

    saved_path = run_dir / "config.json"
    if not cfg.method_kind.federated or (run_dir / "summary.json").exists():
        return cfg
    if find_checkpoint(run_dir) is None or not saved_path.is_file():
        return cfg
    try:
        saved = read_run_config(saved_path)
    except ConfigError:
        return cfg  # not this version's config: train it afresh
    same = {"out": cfg.out, "resume": False, "quiet": cfg.quiet}
    if saved.replace(**same).to_run_config() != cfg.replace(**same).to_run_config():
        return cfg  # another config's run (other settings, rounds or plateau rule)
    return cfg.replace(resume=True)


def _finished(run_dir: Path) -> bool:
    """A run to skip on resume (:func:`fedskip.bench.records.finished`)."""
    path = run_dir / "summary.json"
    return path.is_file() and finished(json.loads(path.read_text("utf-8")))


def read_manifest(out: str | Path) -> dict[str, Any]:
    """``suite.json`` of a suite folder."""
    path = Path(out) / SUITE_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not a bench folder (run `fedskip bench` first)")
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def settings_line(settings: dict[str, Scalar]) -> str:
    """``k=v k=v`` as typed after ``--set``."""
    return " ".join(f"{k}={v}" for k, v in settings.items())
