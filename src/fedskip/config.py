"""One validated configuration for every fedskip command and for the Flower app.

Precedence: defaults < TOML file (``--config``) < ``--set key=value`` overrides.
Keys are kebab-case and identical to the Flower app's ``run_config`` keys, so a resolved
:class:`Config` round-trips through :meth:`Config.to_run_config` / :meth:`Config.from_mapping`.
Every value is a scalar (str, int, float, bool) because Flower's run_config only carries scalars;
lists such as ``layer-ids`` are comma-separated strings.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fedskip.errors import ConfigError
from fedskip.methods import METHODS as METHOD_TABLE
from fedskip.methods import Method

Scalar = str | int | float | bool

TASKS = ("ner", "classification")
DATA_FORMATS = ("auto", "i2b2", "brat", "mimic", "conll", "jsonl", "hf")
LABELS = ("category", "icd9")
TRUNCATIONS = ("head", "tail", "head-tail")  # fedskip.data.encode.TRUNCATIONS
LR_SCHEDULES = ("run", "epoch")  # fedskip.train.engine.LR_SCHEDULES
LAYER_STRATEGIES = ("top", "bottom", "interleaved", "explicit", "importance", "rotating")
METHODS = tuple(METHOD_TABLE)  # what each is: fedskip.methods
PARTITIONS = ("natural", "iid", "dirichlet", "quantity")
SERVER_OPTIMIZERS = ("none", "adam", "yogi")
DP_MODES = ("none", "sample", "client")
DP_CLIPPING = ("fixed", "adaptive")
DP_SAMPLE_GRADS = ("fast", "hooks", "functorch")  # fedskip.privacy.dpsgd.GRAD_SAMPLE_MODES
DP_UNITS = ("auto", "patient", "note", "example")  # fedskip.privacy.units.DP_UNITS
COMPRESSIONS = ("auto", "none", "fp16", "bf16", "int8")
PERSONALIZE = ("none", "head", "norms", "head+norms")  # fedskip.trainability.personal_names
DTYPES = ("fp32", "bf16")
MODEL_INITS = ("pretrained", "random")  # fedskip.models.presets.MODEL_INITS
DEVICES = ("auto", "cpu", "cuda")
ACTIVATION_CACHE = ("auto", "off")
TRACKING = ("none", "tensorboard", "mlflow")
SECAGG_STRATEGIES = ("top", "bottom", "interleaved", "explicit", "rotating")
"""Layer strategies whose choice is the same for every client in a round (needed by SecAgg+,
whose masked vectors must have one shape for all clients)."""
DYNAMIC_STRATEGIES = ("importance", "rotating")
"""Layer strategies whose blocks change between rounds (``LayerSelector.dynamic`` or
``.needs_scores`` in :mod:`fedskip.selection`; a test keeps the two in step)."""


def _opt(
    default: Any,
    help: str,
    choices: tuple[str, ...] | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    return field(
        default=default, metadata={"help": help, "choices": choices, "min": minimum, "max": maximum}
    )


@dataclass
class Config:
    """Resolved settings. Attribute names are snake_case; the user-facing keys are kebab-case."""

    # --- model and task
    model: str = _opt(
        "minilm", "preset (minilm, llama-tiny, llama-3.2-1b), Hugging Face id or local path"
    )
    model_init: str = _opt(
        "pretrained",
        "pretrained: the weights of `model`; random: a random init of its architecture from "
        "`seed` (every site starts from the same weights), labelled NOT PRETRAINED in the console, "
        "summary.json and the export's model card: a systems check, says nothing about accuracy",
        MODEL_INITS,
    )
    model_path: str = _opt(
        "",
        "a local save_pretrained folder with the weights and tokenizer of `model` (a preset's "
        "family is checked, e.g. llama-3.2-1b needs a LLaMA checkpoint); empty = the preset's "
        "own source ($FEDSKIP_LLAMA_3_2_1B, the hub)",
    )
    task: str = _opt("ner", "ner (token classification) or classification (note labels)", TASKS)
    dtype: str = _opt("fp32", "weights dtype on the device", DTYPES)
    device: str = _opt("auto", "auto picks CUDA when present", DEVICES)
    # --- data
    data: str = _opt(
        "synth",
        "'synth' (generated default corpus), a dataset path, a folder of site subfolders, or "
        "'sites' (Deployment Engine: each SuperNode reads its own data-path; see `labels`)",
    )
    data_format: str = _opt("auto", "reader for `data`", DATA_FORMATS)
    label: str = _opt("category", "classification label for MIMIC-III data", LABELS)
    labels: str = _opt(
        "",
        "data=sites: the federation's label schema, comma-separated NER entity types or class "
        "names (the coordinator holds no data to derive it from)",
    )
    icd9_top_k: int = _opt(10, "multi-label ICD-9 coding over the k most frequent codes", minimum=1)
    synth_sites: int = _opt(4, "sites generated for data=synth", minimum=1)
    synth_docs: int = _opt(60, "documents per site generated for data=synth", minimum=2)
    synth_notes_per_patient: int = _opt(
        0,
        "data=synth: notes of every patient (0 = a stay's natural one to four notes); with 1 a "
        "site of synth-docs notes has that many patients (a DP study needs many patients)",
        minimum=0,
    )
    synth_note_lines: int = _opt(
        0,
        "data=synth: lines kept of each note (0 = whole notes; short notes train fast)",
        minimum=0,
    )
    label_noise: float = _opt(
        0.02, "fraction of synthetic labels flipped at random", minimum=0.0, maximum=0.5
    )
    test_fraction: float = _opt(
        0.2,
        "share of each site's documents held out for the global test set",
        minimum=0.0,
        maximum=0.9,
    )
    val_fraction: float = _opt(
        0.0,
        "share of each client's training documents held out as its validation split (never "
        "trained on, never the test set): scored after every round / epoch to pick the model "
        "and to stop at a plateau (0 = no validation split)",
        minimum=0.0,
        maximum=0.5,
    )
    patience: int = _opt(
        0,
        "train to a plateau: stop after this many rounds / epochs without a validation gain of "
        "at least min-delta (needs val-fraction > 0; 0 = train to the maximum)",
        minimum=0,
    )
    min_delta: float = _opt(
        0.005,
        "smallest validation gain (metric units: 0.005 = half a point) that counts as an "
        "improvement for patience",
        minimum=0.0,
    )
    min_rounds: int = _opt(
        0,
        "train to a plateau: the patience rule ends no run before this many rounds / epochs "
        "(a metric such as micro F1 can sit at 0 in the first ones; 0 = from the first)",
        minimum=0,
    )
    max_length: int = _opt(128, "maximum subword tokens per example", minimum=8)
    stride: int = _opt(
        32, "overlap (subword tokens) between sliding windows of long inputs", minimum=0
    )
    truncation: str = _opt(
        "head",
        "classification: which subwords of a note longer than max-length it keeps: head (the "
        "first), tail (the last: a discharge summary's diagnoses and plan) or head-tail (a "
        "quarter from the head, the rest from the tail)",
        TRUNCATIONS,
    )
    # --- layer skipping
    layers: int = _opt(2, "k: number of transformer blocks trained and exchanged", minimum=1)
    layer_strategy: str = _opt("top", "which blocks to train", LAYER_STRATEGIES)
    layer_ids: str = _opt("", "comma-separated block indices for layer-strategy=explicit")
    layer_every: int = _opt(
        0, "interleaved stride n (every n-th block); 0 = spread k evenly", minimum=0
    )
    train_final_norm: bool = _opt(
        True, "also train the final norm (decoders) when the top block is selected"
    )
    importance_batches: int = _opt(
        4, "probe batches used to score layers for layer-strategy=importance", minimum=1
    )
    rescore_every: int = _opt(0, "importance: re-score every n rounds (0 = once)", minimum=0)
    # --- optimisation
    lr: float = _opt(
        2e-3,
        "AdamW learning rate (the default suits training a few top blocks; full fine-tuning "
        "usually wants 1e-5..1e-4)",
        minimum=0.0,
    )
    head_lr: float = _opt(
        1e-2, "learning rate of the freshly initialised task head (0 = same as lr)", minimum=0.0
    )
    weight_decay: float = _opt(0.01, "AdamW weight decay", minimum=0.0)
    warmup_ratio: float = _opt(0.1, "share of steps with linear warmup", minimum=0.0, maximum=1.0)
    lr_schedule: str = _opt(
        "run",
        "shape of the learning rate over one training call (a centralized / local-only run, or "
        "one federated round): run = linear warmup, then linear decay to zero over all its "
        "epochs; epoch = that warmup and decay restarted every epoch (what each federated round "
        "of one local epoch gets, so a centralized baseline can be trained like-for-like)",
        LR_SCHEDULES,
    )
    grad_clip: float = _opt(
        1.0, "max gradient L2 norm (0 = off; DP uses clip-norm instead)", minimum=0.0
    )
    grad_accum: int = _opt(1, "gradient accumulation steps", minimum=1)
    batch_size: int = _opt(32, "examples per step", minimum=1)
    epochs: int = _opt(3, "epochs of centralized / local-only training", minimum=1)
    local_epochs: int = _opt(1, "epochs each client trains per round", minimum=1)
    seed: int = _opt(
        42, "seed for data splits, initialisation and sampling", minimum=0, maximum=2**32 - 1
    )
    # --- federation
    method: str = _opt("layerskip", "training method", METHODS)
    rounds: int = _opt(4, "federated rounds", minimum=1)
    clients: int = _opt(
        4, "number of clients (ignored for partition=natural: one per site)", minimum=1
    )
    partition: str = _opt("natural", "how data is split across clients", PARTITIONS)
    alpha: float = _opt(0.5, "Dirichlet concentration for partition=dirichlet", minimum=1e-6)
    fraction_train: float = _opt(
        1.0, "share of clients sampled each round", minimum=0.0, maximum=1.0
    )
    min_replies: int = _opt(1, "minimum valid client replies for a round to count", minimum=1)
    proximal_mu: float = _opt(0.01, "FedProx proximal term weight", minimum=0.0)
    server_optimizer: str = _opt(
        "none", "server-side optimizer over the averaged update", SERVER_OPTIMIZERS
    )
    server_lr: float = _opt(
        1e-2, "server learning rate for server-optimizer adam/yogi", minimum=0.0
    )
    eval_clients: bool = _opt(True, "also run federated evaluation on clients' test splits")
    # --- privacy
    dp: str = _opt("none", "differential privacy: sample-level (DP-SGD) or client-level", DP_MODES)
    dp_unit: str = _opt(
        "auto",
        "dp=sample: the privacy unit (one DP sample): patient, note or example (a sentence "
        "window); auto = patient when every training note has a patient id, else note",
        DP_UNITS,
    )
    dp_clipping: str = _opt("fixed", "client-level DP clipping", DP_CLIPPING)
    dp_sample_grads: str = _opt(
        "fast",
        "dp=sample: how each unit's gradient is clipped: fast (ghost norms and book-keeping "
        "for Linear layers, no per-example weight copies) or Opacus' per-example gradients "
        "for every layer (hooks, functorch: the reference); the same guarantee",
        DP_SAMPLE_GRADS,
    )
    dp_step_report: bool = _opt(
        False,
        "dp=sample: each client also reports its round's mean norm of the clipped sum, the noise "
        "norm, the share of patients clipped and their median gradient norm (round rows' "
        "dp_step). These are statistics of the site's data NOT covered by ε: for studies on "
        "synthetic or public data, never on patients' notes",
    )
    noise_multiplier: float = _opt(
        1.0, "σ: Gaussian noise std as a multiple of clip-norm", minimum=0.0
    )
    clip_norm: float = _opt(
        1.0, "C: per-sample (dp=sample) or per-client (dp=client) L2 clip", minimum=0.0
    )
    target_epsilon: float = _opt(
        0.0, "if > 0, derive the noise multiplier to spend at most this ε", minimum=0.0
    )
    delta: float = _opt(1e-5, "δ of (ε, δ)-DP", minimum=0.0, maximum=1.0)
    secagg: bool = _opt(False, "secure aggregation (SecAgg+): the server sees only the masked sum")
    secagg_shares: int = _opt(3, "SecAgg+ secret shares per client", minimum=2)
    secagg_threshold: int = _opt(
        2, "SecAgg+ shares needed to reconstruct (dropout tolerance)", minimum=1
    )
    audit_canaries: int = _opt(
        0,
        "privacy audit: m canary notes (unique random phrases, random labels, one privacy unit "
        "each), each put into the training data with probability 1/2; after training the "
        "one-run lower bound on ε (Steinke et al. 2023) is reported beside the accountant's ε "
        "(0 = no audit)",
        minimum=0,
    )
    audit_guesses: int = _opt(
        0,
        "privacy audit: membership guesses r (half 'in' on the lowest-loss canaries, half 'out' "
        "on the highest); 0 = half of audit-canaries",
        minimum=0,
    )
    audit_confidence: float = _opt(
        0.95, "privacy audit: confidence of the ε lower bound", minimum=0.5, maximum=0.999
    )
    # --- beyond the paper
    lora_rank: int = _opt(
        0, "LoRA rank inside the selected blocks (0 = train blocks fully)", minimum=0
    )
    lora_alpha: float = _opt(16.0, "LoRA alpha", minimum=0.0)
    lora_targets: str = _opt("auto", "comma-separated module names for LoRA, or 'auto'")
    lora_freeze_a: bool = _opt(False, "freeze LoRA A matrices (only B travels)")
    compression: str = _opt(
        "auto",
        "update compression on the wire; auto = int8 deltas where the run allows them (not with "
        "secagg=true or dp=client), else none",
        COMPRESSIONS,
    )
    personalize: str = _opt(
        "none",
        "per-site parameters trained at each site and never sent (FedPer / FedBN style): the "
        "task head, the norms inside the trained blocks, or both",
        PERSONALIZE,
    )
    # --- compute
    activation_cache: str = _opt(
        "auto",
        "frozen-prefix activation cache: 'auto' runs the frozen blocks below the lowest trained "
        "block once per example (not every epoch, round and evaluation); 'off' always runs the "
        "whole model",
        ACTIVATION_CACHE,
    )
    activation_cache_mb: int = _opt(
        2048,
        "memory budget (MiB) of a process's activation cache (all clients it serves), capped at "
        "a quarter of the memory available; entries past it are written to the run's "
        "activation-cache/ folder on the node's local disk (size = tokens x hidden x 4 bytes)",
        minimum=0,
    )
    # --- output
    out: str = _opt("runs/latest", "run directory")
    quiet: bool = _opt(False, "no progress bars")
    tracking: str = _opt(
        "none",
        "also log each round's scalars to tensorboard (OUT/tensorboard) and/or mlflow "
        "(comma-separated, e.g. tensorboard,mlflow)",
    )
    mlflow_uri: str = _opt(
        "", "tracking=mlflow: MLflow tracking URI; empty = the SQLite store OUT/mlflow.db"
    )
    resume: bool = _opt(False, "federated runs: continue the run in `out` from its last checkpoint")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key and what is allowed."""
        for f in fields(self):
            value = getattr(self, f.name)
            key = to_key(f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(
                    f"config key '{key}': {value!r} is not one of {', '.join(choices)}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"config key '{key}': {value!r} is not a finite number")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None and value < lo:
                raise ConfigError(f"config key '{key}': {value!r} must be >= {lo}")
            if hi is not None and value > hi:
                raise ConfigError(f"config key '{key}': {value!r} must be <= {hi}")
        if self.layer_strategy == "explicit" and not self.layer_ids.strip():
            raise ConfigError(
                "config key 'layer-ids' is required for layer-strategy=explicit, e.g. '0,5'"
            )
        self.layer_id_list()  # validates the syntax
        self.tracking_list()
        for rule in CROSS_FIELD_RULES:  # rules between keys (below the class)
            if problem := rule(self):
                raise ConfigError(problem)
        self._validate_audit()

    def _validate_audit(self) -> None:
        for key in ("audit-canaries", "audit-guesses"):
            value = getattr(self, to_attr(key))
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config key '{key}': {value!r} is not an integer")
        if not self.audit_canaries:
            return
        if self.audit_guesses > self.audit_canaries:
            raise ConfigError(
                f"config key 'audit-guesses': {self.audit_guesses} exceeds audit-canaries "
                f"({self.audit_canaries})"
            )
        if self.data == "sites" or not self.method_kind.single_model:
            what = (
                "data=sites (the coordinator holds no data)"
                if self.data == "sites"
                else ("method=local (no single model)")
            )
            raise ConfigError(f"config key 'audit-canaries': no privacy audit with {what}")

    @property
    def method_kind(self) -> Method:
        """What kind of method ``method`` is (federated or not, what it trains, ...): its row of
        :data:`fedskip.methods.METHODS`."""
        return METHOD_TABLE[self.method]

    @property
    def wire_compression(self) -> str:
        """The scheme updates travel in: ``compression``, with ``auto`` resolved to ``int8``
        deltas (a quarter of fp32's bytes plus one fp32 scale per 256 values; error feedback keeps
        the rounding error from adding up) unless ``secagg=true`` or ``dp=client`` need the
        plain update, then ``none``. ``auto`` meant ``fp16`` until 2026-12-07; int8 was chosen
        from the ``paper`` suite's frontier, where it cost nothing measurable against fp32 on
        NER at three seeds each for LoRA, FedAvg and layer skipping k = 2, 4 and 5
        (docs/results/README.md); a run records what ``auto`` resolved to as
        ``wire_compression`` in ``summary.json``."""
        if self.compression != "auto":
            return self.compression
        return "none" if self.secagg or self.dp == "client" else "int8"

    def audit_guess_count(self) -> int:
        """Membership guesses of the audit: ``audit-guesses``, or half the canaries."""
        return self.audit_guesses or self.audit_canaries // 2

    def layer_id_list(self) -> list[int]:
        """``layer-ids`` parsed into block indices."""
        text = self.layer_ids.strip()
        if not text:
            return []
        try:
            return [int(tok) for tok in text.replace(" ", "").split(",") if tok]
        except ValueError:
            raise ConfigError(
                f"config key 'layer-ids': {self.layer_ids!r} must be comma-separated integers, e.g. '0,5'"
            ) from None

    def tracking_list(self) -> list[str]:
        """``tracking`` parsed into backend names (``none`` → ``[]``), each in :data:`TRACKING`."""
        names = [tok.strip() for tok in self.tracking.split(",") if tok.strip()]
        for name in names:
            if name not in TRACKING:
                raise ConfigError(
                    f"config key 'tracking': {name!r} is not one of {', '.join(TRACKING)} "
                    "(comma-separated, e.g. tensorboard,mlflow)"
                )
        return list(dict.fromkeys(n for n in names if n != "none"))

    # ------------------------------------------------------------------ conversions
    def to_run_config(self) -> dict[str, Scalar]:
        """Kebab-case mapping of every key (what Flower's run_config carries)."""
        return {to_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base: Config | None = None) -> Config:
        """Build from kebab-case keys over ``base`` (defaults when None); unknown keys are errors."""
        current = dataclasses.asdict(base) if base is not None else {}
        types = {f.name: f.type for f in fields(cls)}
        for key, raw in values.items():
            name = to_attr(key)
            if name not in types:
                raise ConfigError(_unknown_key_message(key))
            current[name] = _coerce(key, raw, default=getattr(base or _DEFAULTS, name))
        return cls(**current)

    def replace(self, **changes: Any) -> Config:
        """A copy with attribute changes, validated."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- cross-field rules
# Each rule returns "" when the config passes, else the one-line ConfigError message. All of
# fedskip's rules between keys live here (tests/test_config_rules.py has one row per rule);
# warnings about settings that work but weaken a guarantee are fedskip.privacy.checks.


def _random_init_reads_no_weights(c: Config) -> str:
    if c.model_init == "random" and c.model_path.strip():
        return (
            f"config key 'model-path': model-init=random reads no weights, so {c.model_path!r} "
            "would be ignored; drop model-path or set model-init=pretrained"
        )
    return ""


def _stride_below_max_length(c: Config) -> str:
    if c.stride < c.max_length:
        return ""
    return (
        f"config key 'stride': {c.stride} must be smaller than max-length ({c.max_length}), "
        "minus the tokenizer's special tokens"
    )


def _min_replies_within_clients(c: Config) -> str:
    if c.min_replies <= max(c.clients, 1) or c.partition == "natural":
        return ""
    return f"config key 'min-replies': {c.min_replies} exceeds clients={c.clients}"


def _lora_needs_static_layers(c: Config) -> str:
    if not (c.lora_rank > 0 and c.method_kind.lora_in_blocks):
        return ""
    if c.layer_strategy not in DYNAMIC_STRATEGIES:
        return ""
    return (
        f"config key 'lora-rank': LoRA inside selected blocks needs a static layer-strategy "
        f"(top, bottom, interleaved, explicit), not {c.layer_strategy}"
    )


def _dp_delta(c: Config) -> str:
    if c.dp == "none" or 0 < c.delta < 1:
        return ""
    return f"config key 'delta': {c.delta!r} must be > 0 and < 1 with dp={c.dp}"


def _dp_clip_norm(c: Config) -> str:
    if c.dp == "none" or c.clip_norm > 0:
        return ""
    return f"config key 'clip-norm': must be > 0 with dp={c.dp}"


def _client_dp_needs_a_federation(c: Config) -> str:
    if c.dp != "client" or c.method_kind.federated:
        return ""
    return (
        "config key 'dp': client-level DP protects a hospital's contribution to a federation; "
        "use dp=sample (DP-SGD) for centralized or local training"
    )


def _client_dp_samples_clients(c: Config) -> str:
    if c.dp != "client" or c.fraction_train > 0:
        return ""
    return f"config key 'fraction-train': {c.fraction_train!r} must be > 0 with dp=client"


def _pooled_training_needs_data_here(c: Config) -> str:
    if c.data != "sites" or not c.method_kind.pooled:
        return ""
    return (
        f"config key 'data': {c.method} training needs the data here; data=sites keeps it "
        "at the sites (give a dataset path or synth)"
    )


def _compression_with_client_dp(c: Config) -> str:
    if c.compression in ("none", "auto") or c.dp != "client":
        return ""
    return (
        f"config key 'compression': {c.compression} cannot be combined with dp=client "
        "(clipping and noise act on the plain update); set compression=none"
    )


def _secagg_layer_strategy(c: Config) -> str:
    if not c.secagg or c.layer_strategy in SECAGG_STRATEGIES:
        return ""
    return (
        f"config key 'layer-strategy': {c.layer_strategy!r} cannot be used with secagg=true "
        "(clients would score and pick different layers, but SecAgg+ sums vectors of one "
        f"shape); use one of {', '.join(SECAGG_STRATEGIES)}"
    )


def _secagg_shares(c: Config) -> str:
    if not c.secagg or c.secagg_shares >= 3:
        return ""
    return f"config key 'secagg-shares': {c.secagg_shares} must be >= 3 for SecAgg+"


def _secagg_threshold(c: Config) -> str:
    if not c.secagg or 2 <= c.secagg_threshold < c.secagg_shares:
        return ""
    return (
        f"config key 'secagg-threshold': {c.secagg_threshold} must be >= 2 and < "
        f"secagg-shares ({c.secagg_shares})"
    )


def _secagg_fixed_clipping(c: Config) -> str:
    if not (c.secagg and c.dp == "client") or c.dp_clipping == "fixed":
        return ""
    return (
        "config key 'dp-clipping': secagg=true with dp=client needs dp-clipping=fixed "
        "(clients clip before masking; adaptive clipping is not supported under SecAgg+)"
    )


def _secagg_plain_values(c: Config) -> str:
    if not c.secagg or c.compression in ("none", "auto"):
        return ""
    return (
        f"config key 'compression': {c.compression} cannot be combined with secagg=true "
        "(masked sums need plain values); set compression=none"
    )


def _personalize_needs_a_federation(c: Config) -> str:
    if c.personalize == "none" or c.method_kind.federated:
        return ""
    return (
        f"config key 'personalize': {c.personalize} needs a federated method (a site's own "
        f"model is what method={c.method} trains already); set personalize=none"
    )


def _personalize_needs_client_eval(c: Config) -> str:
    if c.personalize == "none" or c.eval_clients:
        return ""
    return (
        "config key 'eval-clients': personalize needs eval-clients=true (only a site can score "
        "and export its personalized model)"
    )


def _patience_needs_validation(c: Config) -> str:
    if c.patience == 0 or c.val_fraction > 0:
        return ""
    return (
        f"config key 'patience': {c.patience} needs a validation split; set val-fraction > 0 "
        "(the plateau is never judged on the test set)"
    )


def _validation_needs_data_here(c: Config) -> str:
    if c.val_fraction == 0 or c.data != "sites":
        return ""
    return (
        "config key 'val-fraction': not supported with data=sites (the coordinator holds no "
        "data to score a validation split on); set val-fraction=0 and patience=0"
    )


def _client_eval_needs_a_test_split(c: Config) -> str:
    if c.test_fraction > 0 or not c.eval_clients or not c.method_kind.federated:
        return ""
    return (
        "config key 'test-fraction': 0 leaves the clients no test split for eval-clients=true; "
        "set test-fraction > 0 or eval-clients=false"
    )


CROSS_FIELD_RULES = (
    _random_init_reads_no_weights,
    _stride_below_max_length,
    _client_eval_needs_a_test_split,
    _min_replies_within_clients,
    _lora_needs_static_layers,
    _dp_delta,
    _dp_clip_norm,
    _client_dp_needs_a_federation,
    _client_dp_samples_clients,
    _compression_with_client_dp,
    _secagg_layer_strategy,
    _secagg_shares,
    _secagg_threshold,
    _secagg_fixed_clipping,
    _secagg_plain_values,
    _personalize_needs_a_federation,
    _personalize_needs_client_eval,
    _patience_needs_validation,
    _validation_needs_data_here,
    _pooled_training_needs_data_here,
)
"""Checked in this order by :meth:`Config.validate`; the first that fails is the error."""


RESUME_MAY_CHANGE = frozenset(
    {
        "rounds",  # extend (or shorten) the run
        "patience",
        "min-rounds",
        "min-delta",
        "device",
        "activation-cache",
        "activation-cache-mb",
        "quiet",
        "tracking",
        "mlflow-uri",
        "out",
        "resume",
    }
)
"""Keys ``--resume`` may change: how long the run goes on (``rounds`` and the plateau rule),
where and how it computes and what it logs. Any other key (data, seed, model, task, method,
split, layers, optimisation, privacy, compression, ...) would continue the checkpoint as another
run, so it must keep its value."""


LEGACY_AUTO_WIRE = "fp16"
"""What ``compression=auto`` resolved to before 2026-12-07 (outside ``secagg`` / ``dp=client``)."""


def run_wire(saved: Config, recorded: str = "") -> str:
    """The scheme a checkpointed run sent its updates in: what its checkpoint recorded
    (``totals.wire``), else, for a checkpoint written before that was recorded, its config's
    scheme as ``auto`` then resolved (:data:`LEGACY_AUTO_WIRE`)."""
    if recorded:
        return recorded
    if saved.compression != "auto":
        return saved.compression
    return "none" if saved.secagg or saved.dp == "client" else LEGACY_AUTO_WIRE


def pinned_wire(cfg: Config, wire: str) -> Config:
    """``cfg`` with ``compression=auto`` replaced by ``wire``, the scheme its run sent: a
    resumed run keeps its wire even where ``auto`` has since come to mean another."""
    return cfg.replace(compression=wire) if cfg.compression == "auto" else cfg


def resume_conflict(saved: Config, resumed: Config) -> str:
    """ "" when ``resumed`` continues the run of ``saved``, else the one-line error naming the
    first key outside :data:`RESUME_MAY_CHANGE` whose value differs. ``compression`` compares
    the schemes the two resolve to (``auto`` and the scheme it stands for are the same run);
    pin ``saved`` to its run's wire first (:func:`pinned_wire`)."""
    for f in fields(Config):
        key = to_key(f.name)
        before, after = getattr(saved, f.name), getattr(resumed, f.name)
        if key == "compression":
            before, after = saved.wire_compression, resumed.wire_compression
        if key not in RESUME_MAY_CHANGE and before != after:
            return (
                f"config key '{key}': cannot change when resuming (the run has {before!r}, "
                f"not {after!r}); only {', '.join(sorted(RESUME_MAY_CHANGE - {'out', 'resume'}))}"
                " may change; start a new run in another out folder instead"
            )
    return ""


def to_key(attr: str) -> str:
    return attr.replace("_", "-")


def to_attr(key: str) -> str:
    return key.strip().replace("-", "_")


def known_keys() -> list[str]:
    return [to_key(f.name) for f in fields(Config)]


def _unknown_key_message(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, known_keys(), n=3)
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else f"; known keys: {', '.join(known_keys())}"
    )
    return f"unknown config key '{key}'{hint}"


def _coerce(key: str, raw: Any, *, default: Any) -> Any:
    """Convert a TOML value or a ``--set`` string to the type of the key's default."""
    kind = type(default)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"config key '{key}': {raw!r} is not a boolean (true or false)")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"config key '{key}': {raw!r} is not an integer")
        try:
            value = float(raw) if not isinstance(raw, int) else raw
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': {raw!r} is not an integer") from None
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"config key '{key}': {raw!r} is not an integer")
        return int(value)
    if kind is float:
        if isinstance(raw, bool):
            raise ConfigError(f"config key '{key}': {raw!r} is not a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': {raw!r} is not a number") from None
    if isinstance(raw, (list, tuple)):
        return ",".join(str(v) for v in raw)
    return str(raw)


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file. Keys may sit at the top level or under ``[fedskip]``/``[tool.flwr.app.config]``."""
    p = Path(path)
    try:
        data = tomllib.loads(_toml_text(p.read_bytes(), p))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from None
    if "fedskip" in data and isinstance(data["fedskip"], dict):
        return dict(data["fedskip"])
    app_cfg = data.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
    if isinstance(app_cfg, dict):
        return dict(app_cfg)
    return data


def _toml_text(raw: bytes, path: Path) -> str:
    """The text of a TOML file, which must be UTF-8 (a leading byte-order mark is dropped)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(
            f"{path}: config file is UTF-16; TOML files are UTF-8: re-save it as UTF-8"
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: config file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start}); TOML files are UTF-8: re-save it as UTF-8"
        ) from None


def read_run_config(path: str | Path) -> Config:
    """The config a run wrote to its ``config.json`` (kebab-case keys). Invalid JSON (or not
    UTF-8) is a :class:`ConfigError` naming the file; a missing file raises
    :class:`FileNotFoundError`, since what that means is the caller's to say."""
    path = Path(path)
    try:
        values = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    return Config.from_mapping(values)


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), **defaults: Any
) -> Config:
    """Defaults (with command-specific ``defaults`` as kebab or snake keys) < TOML file < overrides."""
    base = Config()
    if defaults:
        base = Config.from_mapping({to_key(k): v for k, v in defaults.items()}, base=base)
    if path is not None:
        base = Config.from_mapping(read_toml(path), base=base)
    return Config.from_mapping(parse_overrides(overrides), base=base)


_DEFAULTS = Config()
