"""Run directory: what a run leaves behind, in files a person (or ``fedskip report``) can read.

```
OUT/
  config.json     the fully resolved config (kebab-case keys, = Flower run_config)
  metrics.jsonl   one JSON object per epoch (centralized/local) or per round (federated)
  summary.json    final metrics, timings, parameter and traffic counts
  report.md       the run's report and plots/ (rendered by the training command at its end, as
                  ``fedskip report OUT`` renders it; report.csv: its table)
  tensorboard/    event files of each row's scalars (config key tracking=tensorboard)
  mlflow.db       MLflow's SQLite store, one run (tracking=mlflow; see fedskip.tracking)
  model/          save_pretrained output: weights, tokenizer, label map (config.json),
                  fedskip.json — task, labels, selected layers and the training config — and
                  README.md, the model card (fedskip.modelcard); all files with one mode
```

``model/`` loads with plain transformers (``AutoModelForTokenClassification.from_pretrained``),
no fedskip needed; :func:`load_export` is the fedskip side used by ``evaluate`` and ``predict``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fedskip.errors import ConfigError, ModelError
from fedskip.records.schema import MetricsRow, RunSummary, read_metrics
from fedskip.train.metrics import TaskInfo

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from fedskip.config import Config
    from fedskip.tracking import Trackers

MANIFEST = "fedskip.json"
MANIFEST_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars → numbers, arrays → lists, Path → str,
    non-finite floats → None (``NaN`` is not JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())  # numpy arrays/scalars, torch tensors
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n", "utf-8")
    os.replace(tmp, path)


class RunDir:
    """The run directory ``out`` (created with its parents)."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out)
        self.tracker: Trackers | None = None  # from write_config
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"config key 'out': cannot create {self.path} ({exc.strerror})"
            ) from None

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def write_config(self, cfg: Config, *, resume: bool = False) -> Path:
        """Write ``config.json`` and start a run: unless ``resume``, the metrics and summary of a
        previous run in the same folder are removed so the records never mix two runs. Opens
        the trackers of config key ``tracking`` (closed by :meth:`close`)."""
        from fedskip.tracking import open_trackers

        if not resume:
            self.metrics_path.unlink(missing_ok=True)
            self.summary_path.unlink(missing_ok=True)
        _write_json(self.config_path, cfg.to_run_config())
        self.close()
        self.tracker = open_trackers(cfg, self.path)
        return self.config_path

    def append_metrics(self, row: MetricsRow) -> None:
        """Append one row as a line of ``metrics.jsonl`` and flush it to disk; the trackers (if
        any) log its scalars."""
        plain = to_jsonable(row.to_json())
        line = json.dumps(plain, sort_keys=False)
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tracker is not None:
            self.tracker.log_round(plain)

    def close(self, *, ok: bool = True) -> None:
        """End the trackers' runs (``ok=False``: the run failed); idempotent."""
        if self.tracker is not None:
            tracker, self.tracker = self.tracker, None
            tracker.close(ok=ok)

    def read_metrics(self) -> list[MetricsRow]:
        """The rows of ``metrics.jsonl`` (empty when none were written)."""
        return read_metrics(self.metrics_path)

    def write_summary(self, summary: RunSummary) -> Path:
        _write_json(self.summary_path, summary.to_json())
        return self.summary_path

    def save_model(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        *,
        cfg: Config | None = None,
        selected_layers: Sequence[int] | None = None,
        extra: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        sites: Sequence[str] = (),
    ) -> Path:
        """Export to ``model/``: weights + tokenizer + label map via ``save_pretrained``,
        ``fedskip.json`` (task, labels, multi-label, selected blocks, training config) and the
        model card ``README.md`` (:mod:`fedskip.modelcard`; ``summary``: the run's scores and
        privacy figures, ``sites``: the sites trained on). Every file gets the same mode: what
        the process's umask gives a new file (``save_pretrained`` writes the weights 0600).

        An Opacus wrapper is removed and LoRA adapters are merged into a copy, so the export is
        a plain transformers model.
        """
        plain = export_ready(model)
        target = self.model_dir
        target.mkdir(parents=True, exist_ok=True)
        from fedskip.models.loading import quiet_transformers

        with quiet_transformers():  # no "Writing model shards" progress bar
            plain.save_pretrained(target)
            tokenizer.save_pretrained(target)
        manifest = {
            "format": MANIFEST_VERSION,
            **describe_model(plain, cfg),
            "selected_layers": list(selected_layers) if selected_layers is not None else None,
            "config": cfg.to_run_config() if cfg is not None else None,
            **(extra or {}),
        }
        _write_json(target / MANIFEST, manifest)
        from fedskip.modelcard import write_card

        write_card(target, to_jsonable(manifest), summary, sites)
        _same_mode(target, like=target / MANIFEST)
        return target


def _same_mode(folder: Path, *, like: Path) -> None:
    """Give every file in ``folder`` the permission bits of ``like`` (a file written with the
    umask's default mode)."""
    mode = like.stat().st_mode & 0o777
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


def export_ready(model: nn.Module) -> PreTrainedModel:
    """The plain Hugging Face model to save: unwrapped from Opacus, LoRA merged (on a copy)."""
    from peft import PeftModel

    from fedskip.train.engine import unwrap_model

    plain = unwrap_model(model)
    if isinstance(plain, PeftModel):
        return cast("PreTrainedModel", copy.deepcopy(plain).merge_and_unload())
    return cast("PreTrainedModel", plain)


def describe_model(model: Any, cfg: Config | None = None) -> dict[str, Any]:
    """Task, label list (in id order) and multi-label flag of a task model."""
    config = model.config
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    return {
        "task": cfg.task if cfg is not None else _task_of(config),
        "labels": labels,
        "multi_label": config.problem_type == "multi_label_classification",
    }


def _task_of(config: PretrainedConfig) -> str:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return "ner"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classification"
    raise ModelError(
        f"model architectures {architectures or 'unknown'}: not a token or sequence classifier"
    )


@dataclass
class Exported:
    """An exported model loaded for inference."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: str
    label_list: list[str]
    multi_label: bool
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def task_info(self) -> TaskInfo:
        """Task, labels and multi-label flag (what encoding and scoring need)."""
        return TaskInfo(self.task, list(self.label_list), self.multi_label)

    @property
    def max_length(self) -> int:
        """The training run's ``max-length`` (128 when the export does not say)."""
        return int(self.setting("max-length", 128))

    @property
    def truncation(self) -> str:
        """The training run's ``truncation`` of long classification inputs (``head`` when the
        export does not say: what fedskip did before the key existed)."""
        return str(self.setting("truncation", "head"))

    @property
    def stride(self) -> int:
        """The training run's ``stride`` (32 when the export does not say)."""
        return int(self.setting("stride", 32))

    def setting(self, key: str, default: Any) -> Any:
        """A training config value (kebab-case key) recorded in the export, else ``default``."""
        config = self.manifest.get("config") or {}
        return config.get(key, default)


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def load_export(path: str | Path, *, device: str = "cpu") -> Exported:
    """Load ``model/`` written by :meth:`RunDir.save_model` (or any saved token/sequence
    classifier with a fast tokenizer) in eval mode on ``device``."""
    folder = Path(path)
    if (folder / "model" / "config.json").is_file() and not _has_weights(folder):
        folder = folder / "model"  # a run directory was given
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not an exported model (no config.json); pass OUT/model")
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST).is_file():
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from fedskip.models.loading import quiet_transformers, resolve_device

    try:
        with quiet_transformers():  # no load report or progress bar on stderr
            config = AutoConfig.from_pretrained(folder)
            task = manifest.get("task") or _task_of(config)
            ner = task == "ner"
            auto = AutoModelForTokenClassification if ner else AutoModelForSequenceClassification
            model = auto.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{folder}: cannot load the exported model ({first})") from None
    model.to(resolve_device(device)).eval()
    info = describe_model(model)
    return Exported(model, tokenizer, task, info["labels"], info["multi_label"], manifest)
