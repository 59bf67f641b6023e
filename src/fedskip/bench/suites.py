"""Benchmark suites: which configurations ``fedskip bench`` trains, and with which settings.

A suite is one set of shared settings (model, data size, rounds, seed, ...) plus a
:class:`Sweep` — the axes the paper varies. :func:`expand` turns the sweep into named
:class:`BenchConfig` entries, one run directory each. A configuration that appears on several
axes (the default layer-skipping run is also "k = 2" of the layer ablation, "natural" of the
non-IID axis and "no DP" of the ε sweep) is trained once and tagged with every group it serves.

Groups (the ``groups`` of a config; the report plots and claims read them):

``methods``     centralized, local-only, FedAvg, FedProx, LoRA and layer skipping, per task
                (centralized, local-only and FedProx fine-tune every block, like FedAvg; LoRA puts
                adapters of rank ``lora-rank`` on every block)
``layers``      layer skipping with k = 1 .. all blocks (k = all is full fine-tuning = FedAvg)
``strategies``  top / bottom / interleaved / importance / rotating at the default k
``noniid``      IID, Dirichlet α and natural by-site partitions, for layer skipping and FedAvg
``privacy``     no DP and sample-level DP-SGD at target ε, for layer skipping and FedAvg
``client-dp``   (``Sweep.client_dp_clients`` > 0) client-level DP-FedAvg over that many simulated
                clients (IID partition of the privacy corpus) at each target ε, and no DP
``gaps``        (``Sweep.same_blocks``) centralized training of the same blocks as each
                layer-skipping k (``<task>-centralized-k<k>``): the federation gap apart from
                the capacity gap
``frontier``    (extension point) added by builders registered with :func:`register_group`
``personalization``  (registered) ``paper`` suite: personalize none vs head and local-only on
                natural and Dirichlet α = 0.1 partitions (:mod:`fedskip.bench.personalization`)

Seeds (``Sweep.seeds``): every config of the ``Sweep.seed_groups`` is also run with each other
seed, as ``<name>-s<seed>`` (label ``variant`` = the name it replicates); reports show mean ±
std over a variant's seeds. The replicas come after every first-seed config in run order.

Candidates (``Sweep.candidates``): every config of a listed method is also trained with each
other :class:`Candidate` setting, as ``<name>-<suffix>`` (labels ``candidate``,
``candidate_for``); reports keep, per configuration and seed, the run with the best validation
score (:mod:`fedskip.bench.choice`). The paper suites train each centralized reference with
both learning-rate schedules (:data:`CENTRALIZED_SCHEDULES`).

Every name is a run-directory name: ``<task>-<method>[-<variant>]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedskip.config import Config, Scalar
from fedskip.errors import ConfigError

METHOD_ORDER = ("centralized", "local", "fedavg", "fedprox", "lora", "layerskip")
GROUPS = (
    "methods",
    "layers",
    "strategies",
    "noniid",
    "privacy",
    "client-dp",
    "gaps",
    "frontier",
    "personalization",
)


@dataclass(frozen=True)
class Partition:
    """One point of the non-IID axis: a label for tables/plots and the config keys it sets."""

    label: str
    settings: dict[str, Scalar]


IID = Partition("iid", {"partition": "iid"})
NATURAL = Partition("natural", {"partition": "natural"})


def dirichlet(alpha: float) -> Partition:
    return Partition(f"dir{alpha:g}", {"partition": "dirichlet", "alpha": alpha})


@dataclass(frozen=True)
class Candidate:
    """One setting a run kind is tried with, chosen on validation (:mod:`fedskip.bench.choice`):
    ``label`` names it in tables, ``suffix`` in run names (``<name>-<suffix>``; the first
    candidate of a kind keeps the plain name), ``settings`` are the config keys it sets."""

    label: str
    suffix: str
    settings: dict[str, Scalar]


@dataclass(frozen=True)
class Sweep:
    """The axes of a suite. Empty tuples switch an axis off; ``layer_counts=None`` means
    every k from 1 to the model's number of blocks."""

    tasks: tuple[str, ...] = ("ner", "classification")
    methods: tuple[str, ...] = METHOD_ORDER
    layer_counts: tuple[int, ...] | None = None
    strategies: tuple[str, ...] = ("top", "bottom", "interleaved", "importance", "rotating")
    partitions: tuple[Partition, ...] = (
        IID,
        dirichlet(1.0),
        dirichlet(0.3),
        dirichlet(0.1),
        NATURAL,
    )
    noniid_methods: tuple[str, ...] = ("layerskip", "fedavg")
    epsilons: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    privacy_methods: tuple[str, ...] = ("layerskip", "fedavg")
    """The ``privacy`` group's variants: a method name, or a key of ``privacy_variants``."""
    privacy_variants: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys of named privacy variants (e.g. ``"lora-fa"``: LoRA with frozen A, or
    ``"layerskip-k4"``: four blocks); a variant not listed is its method with the defaults."""
    privacy_seed_epsilons: tuple[float | None, ...] = ()
    """Target ε of the ``privacy`` runs that also get the ``privacy-seeds`` group (None: the
    run without DP), so that ``seed_groups`` can replicate only those over the seeds."""
    ablation_task: str = "ner"
    """The task the layer, strategy, non-IID and privacy axes run on."""
    other_task_methods: tuple[str, ...] | None = None
    """Methods run on the tasks other than ``ablation_task`` (None: all of ``methods``)."""
    task_settings: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys per task on top of the suite's settings (data size, window length)."""
    method_settings: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys per method, e.g. LoRA's larger learning rate (adapters start at zero)."""
    partial_settings: dict[str, Scalar] = field(default_factory=dict)
    """Config keys of the runs that train only some blocks — layer skipping with k < all and
    the centralized runs of the same blocks — e.g. the larger learning rate a few blocks take.
    Federated and centralized runs of the same blocks get the same keys, so the federation gap
    compares like with like. A config's own keys (``privacy_settings`` among them) override."""
    partial_lr_blocks: int = 0
    """When > 0, a run of some blocks that trains k > this many blocks takes the partial ``lr``
    scaled by ``partial_lr_blocks / k`` (3 significant digits): the step falls with the number
    of trained blocks, toward full fine-tuning's. 0: one ``lr`` for every k."""
    privacy_settings: dict[str, Scalar] = field(default_factory=dict)
    """Config keys of every ``privacy`` / ``client-dp`` run, DP or not (a larger corpus, DP
    batch sizes); when set, those runs are named ``<task>-<method>-dp…`` (they are not the
    methods group's configs)."""
    client_dp_clients: int = 0
    """``client-dp`` group: simulated clients of client-level DP (0 = no such group)."""
    client_dp_methods: tuple[str, ...] = ()
    """Methods of the ``client-dp`` group (empty: ``privacy_methods``)."""
    client_dp_epsilons: tuple[float, ...] = ()
    """Target ε of the ``client-dp`` group (empty: ``epsilons``)."""
    client_dp_settings: dict[str, Scalar] | None = None
    """Config keys of the ``client-dp`` runs in place of ``privacy_settings`` (None: the same
    keys): client-level DP needs many clients, not many privacy units per client, so it can run
    on a smaller corpus than DP-SGD."""
    same_blocks: bool = False
    """``gaps`` group: a centralized run training the same blocks as each layer-skipping k."""
    seeds: tuple[int, ...] = ()
    """Seeds of the ``seed_groups`` configs (empty: the suite's ``seed`` only)."""
    seed_groups: tuple[str, ...] = ("methods", "layers", "gaps")
    candidates: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    """Per method, the settings each of its configs is trained with (every seed); reports keep,
    per configuration and seed, the candidate with the best validation score
    (:func:`fedskip.bench.choice.choose_on_validation`) and list the others."""


@dataclass
class BenchConfig:
    """One training run of a suite: its run-directory name, the config keys it sets on top of
    the suite's settings, and the groups it belongs to."""

    name: str
    settings: dict[str, Scalar]
    groups: list[str] = field(default_factory=list)
    labels: dict[str, Scalar] = field(default_factory=dict)
    """Axis values for tables and plots (e.g. ``{"partition": "dir0.3"}``, ``{"target_epsilon": 8}``)."""


@dataclass(frozen=True)
class Suite:
    """A named suite: shared settings (kebab-case config keys), the sweep, and what it is for."""

    name: str
    description: str
    settings: dict[str, Scalar]
    sweep: Sweep


# --------------------------------------------------------------------------- the suites
_SHARED: dict[str, Scalar] = {
    "model": "minilm",
    "data": "synth",
    "synth-sites": 4,
    "clients": 4,
    "partition": "natural",
    "layers": 2,
    "layer-strategy": "top",
    "seed": 42,
    "quiet": True,
    "eval-clients": False,
    # every method exchanges plain fp32 tensors, as in the paper; wire compression is studied
    # on its own axis (the frontier suite sets it per point)
    "compression": "none",
}

PARTIAL_SETTINGS: dict[str, Scalar] = {"lr": 2e-3, "head-lr": 1e-2}
"""Learning rates of the runs that train only some blocks (layer skipping k < all and its
centralized same-blocks runs): ``fedskip run``'s defaults, chosen for k = 2 on the default
corpus (docs/federated.md "The default run"). A few blocks on top of a frozen pretrained
encoder take a larger step than full fine-tuning (lr 5e-4), whose pretrained lower blocks a
step that large would disturb. Fixed per run kind, not tuned per run on validation; for
k > 2 the paper suites scale ``lr`` down (:data:`PARTIAL_LR_BLOCKS`)."""

PARTIAL_LR_BLOCKS = 2
"""The paper suites' runs of k > 2 blocks take lr 2e-3 x 2 / k (k = 3: 1.33e-3, 4: 1e-3,
5: 8e-4; all 6 blocks: full fine-tuning's 5e-4). At one lr 2e-3 for every k (seed 42, 60 notes
per site) centralized k = 3 and 4 peaked after 1–2 epochs and then diverged, and so did layer
skipping k = 4 (test F1 0.338 at round 5), where k <= 2 converged: the step suited to two blocks
is too large for more. A rule fixed before those runs were repeated, not tuned on their
scores."""

CENTRALIZED_SCHEDULES = (
    Candidate("epoch", "", {"lr-schedule": "epoch"}),
    Candidate("run", "lrrun", {"lr-schedule": "run"}),
)
"""The centralized references (full and same-blocks) are trained with both learning-rate
schedules and the one with the better validation score counts, per configuration and seed
(the other is listed under "Chosen on validation"): ``epoch`` restarts warmup and linear decay
every epoch, as every federated round of one local epoch does; ``run`` spreads one over all
``epochs`` (20). Under ``run`` alone the plateau rule stopped centralized runs after 7–18
epochs with the rate still at 11–72 % of its peak, never annealed, and FedAvg read 1.8 points
above centralized full fine-tuning; under ``epoch`` alone full fine-tuning gained but training
two blocks lost (it plateaued after 4–5 epochs). A reference is only as strong as its
training, so each gets the better of the two on validation — a choice the federated runs do
not get, which makes the federation gap conservative. Local-only runs keep ``run`` (the lower
bound, not a gap's reference)."""

LORA_SETTINGS: dict[str, Scalar] = {"lr": 2e-3}
"""The LoRA baseline's learning rate: adapters start at zero (B = 0) and need a larger step
than fine-tuning whole blocks (LoRA's usual range is 1e-4..3e-3)."""

SMOKE = Suite(
    name="smoke",
    description="every method on NER, centralized / FedAvg / layer skipping on note "
    "classification and one point of the k, non-IID and DP axes, on a few documents for one "
    "round: checks the harness end to end in under 3 minutes",
    settings={
        **_SHARED,
        "synth-docs": 3,
        "max-length": 32,
        "stride": 8,
        "rounds": 1,
        "epochs": 1,
        "local-epochs": 1,
        "batch-size": 16,
        "lr": 5e-4,
        "head-lr": 2e-3,
        "lora-rank": 4,
        "importance-batches": 1,
    },
    sweep=Sweep(
        other_task_methods=("centralized", "fedavg", "layerskip"),
        layer_counts=(1, 2),
        strategies=(),
        partitions=(dirichlet(0.3), NATURAL),
        noniid_methods=("layerskip",),
        epsilons=(8.0,),
        privacy_methods=("layerskip",),
        method_settings={"lora": LORA_SETTINGS},
    ),
)

PLATEAU: dict[str, Scalar] = {"val-fraction": 0.2, "patience": 3, "min-delta": 0.005}
"""Train to a plateau (issue #16): each client holds out a fifth of its training notes for
validation; a run stops after 3 rounds / epochs without half a point of validation gain, at
``rounds`` / ``epochs`` at the latest, and reports the test metric of the round chosen on
validation."""

SEEDS = (42, 43, 44)
"""The seeds of the methods, layer-count and same-blocks groups (and in ``paper`` the
layer-selection strategies; mean ± std in the tables)."""

CLIENT_DP_SETTINGS: dict[str, Scalar] = {
    "synth-docs": 240,
    "batch-size": 64,
    "grad-accum": 4,
    "lr": 2e-3,
    "head-lr": 5e-3,
    "clip-norm": 1.0,
}
"""The ``client-dp`` group's settings: a 4x larger corpus than the methods' (240 notes per
site, split IID over the simulated clients, about 15 notes each), the DP learning rates; the
same settings without DP are the reference."""

DP_SETTINGS: dict[str, Scalar] = {
    "synth-docs": 4000,
    "synth-notes-per-patient": 1,
    "synth-note-lines": 1,
    "max-length": 64,
    "stride": 16,
    "rounds": 10,
    "local-epochs": 2,
    "batch-size": 64,
    "grad-accum": 4,
    "lr": 2e-3,
    "head-lr": 5e-3,
    "clip-norm": 1.0,
    "eval-clients": False,
}
"""The ``privacy`` group's settings (issue #32): ε per patient over a corpus that buys patients,
not words — every patient one note of one line, so a site of ``synth-docs`` × its size factor
notes has that many patients (5,000, 3,000, 6,000 and 2,000; about 3,200, 1,920, 3,840 and 1,280
train after the test and validation splits) — and DP-SGD's large expected batches: Poisson draws
of 64 patients merged 4 to a step, 256 patients per update (a step samples each patient at
rate 0.07–0.20), 10 rounds of 2 local epochs. The same settings without DP are the reference.

History (docs/results/probes/): the group first trained on the default corpus (240 notes per
site: 38–118 training patients, fewer than a step's 256, so every step was accounted at rate 1;
F1 0.05 after a round); then it was planned on 2,400 long notes per site (about two hours a
round on this CPU: never run); then on 1,000 two-line notes per site with 128 patients a step,
where every DP run collapsed to predicting O (test F1 0.00–0.07 at ε = 8): the clipped sum's
norm was 30–52 against the noise's 634 (LoRA with A frozen) to 2,908 (layer skipping k = 2)."""

PRIVACY_VARIANTS = ("layerskip", "layerskip-k4", "lora-fa", "layerskip-lora-fa", "fedavg")
"""The ``paper`` suite's privacy group: layer skipping of 2 and 4 blocks, LoRA (rank 8, every
block) with A frozen (FFA-LoRA: only B and the head train, fewer coordinates for the noise),
the same frozen-A adapters inside layer skipping's 2 blocks only, and FedAvg of every block;
each without DP and at every ε of the sweep."""

PRIVACY_VARIANT_SETTINGS: dict[str, dict[str, Scalar]] = {
    "layerskip-k4": {"method": "layerskip", "layers": 4},
    "lora-fa": {"method": "lora", "lora-rank": 8, "lora-freeze-a": True},
    "layerskip-lora-fa": {"method": "layerskip", "lora-rank": 8, "lora-freeze-a": True},
}

ICD9_SETTINGS: dict[str, Scalar] = {"label": "icd9", "truncation": "tail"}
"""Note classification in the paper suites: multi-label ICD-9 coding of discharge summaries
from their last ``max-length`` subwords, where the discharge diagnoses are. On the synthetic
corpus a code's mention lies in the first 128 subwords of its summary for 24 % of an admission's
codes and in the last 128 for 70 % (docs/data-formats.md, "Tokenization"); the head, fedskip's
default, leaves the task with little to learn. Chosen from where the training notes mention
their codes, not from any score.

Only discharge summaries carry codes, about a fifth of a site's notes: at 150 notes per site a
site trained on about 25 of them (one optimizer step per round), and FedAvg and layer skipping
(seed 42) kept one constant prediction (test micro F1 0.417 in every round) until the plateau
rule stopped them after 4–5 rounds, where centralized training of the same notes reached
0.573. The suites therefore generate 1,200 (``paper``; about 200 training summaries per site)
and 300 (``paper-quick``) notes per site for the classification task.

ICD9_MIN_ROUNDS (half of each suite's cap) keeps the plateau rule from ending an ICD-9 run
before it has learned: thresholded micro F1 sits at 0 or swings between 0 and a partial
score while the codes' logits cross the threshold, and with patience 3 alone the published
seed-43 layer-skipping run stopped at round 5 (test 0.347) and centralized full fine-tuning's
constant-lr candidate after 4 epochs at 0.0 (docs/results/README.md). Chosen from those
validation curves' shape, not from any test score."""

ICD9_MIN_ROUNDS = {"paper": 10, "paper-quick": 5}
"""``min-rounds`` of the classification task per suite (the issue's "≥ 10 rounds")."""

PAPER = Suite(
    name="paper",
    description="the paper's comparison at CPU scale, every run to a validation plateau "
    "(at most 20 rounds / epochs) with 3 seeds for the methods, layer counts, "
    "centralized same-blocks runs and layer strategies: 6 methods on NER (the default "
    "corpus: 60 notes per site, 128-token windows), centralized / FedAvg / layer skipping on multi-label ICD-9 coding "
    "of discharge summaries from their last 128 subwords (1,200 notes per site), k = 1..6 each "
    "with its centralized same-blocks run (each centralized run with both lr schedules, the "
    "one better on validation kept), five layer strategies, IID / Dirichlet 1.0, 0.3, "
    "0.1 / natural partitions and DP-SGD at ε 8, 4, 2, 1",
    settings={
        **_SHARED,
        **PLATEAU,
        "synth-docs": 60,
        "max-length": 128,
        "stride": 32,
        "rounds": 20,
        "epochs": 20,
        "local-epochs": 1,
        "batch-size": 32,
        "lr": 5e-4,
        "head-lr": 2e-3,
        "lora-rank": 8,
        "importance-batches": 2,
    },
    sweep=Sweep(
        other_task_methods=("centralized", "fedavg", "layerskip"),
        task_settings={
            "classification": {
                "synth-docs": 1200,
                "min-rounds": ICD9_MIN_ROUNDS["paper"],
                **ICD9_SETTINGS,
            }
        },
        method_settings={"lora": LORA_SETTINGS},
        candidates={"centralized": CENTRALIZED_SCHEDULES},
        partial_settings=PARTIAL_SETTINGS,
        partial_lr_blocks=PARTIAL_LR_BLOCKS,
        privacy_settings=DP_SETTINGS,
        privacy_methods=PRIVACY_VARIANTS,
        privacy_variants=PRIVACY_VARIANT_SETTINGS,
        privacy_seed_epsilons=(None, 8.0),
        client_dp_settings=CLIENT_DP_SETTINGS,
        client_dp_clients=64,
        client_dp_methods=("layerskip",),
        client_dp_epsilons=(8.0, 2.0),
        same_blocks=True,
        seeds=SEEDS,
        # strategies too: at seed 42 interleaved (blocks 2, 5: 0.952) and bottom (0.943) beat
        # top (0.906 ± 0.004) by more than top's seed spread; a verdict needs their spread
        seed_groups=("methods", "layers", "gaps", "strategies", "privacy-seeds"),
    ),
)

PAPER_QUICK = Suite(
    name="paper-quick",
    description="the paper suite's tables at a smaller scale (a fifth of its NER notes, fewer "
    "axis points; about 83 minutes on an idle 2-core machine, 30 of them seed 42's 26 runs: "
    "over the 20 minutes asked for, see docs/results/README.md): every "
    "run to a validation plateau (at most 10 rounds / epochs), 3 seeds for the methods, layer "
    "counts and same-blocks runs; NER with 12 notes per site, ICD-9 coding with 300 notes per "
    "site; k = 1, 2, 3 with their centralized same-blocks runs, top / bottom strategies, IID / "
    "Dirichlet 0.3 / natural, DP-SGD at ε 8 and 1",
    settings={
        **_SHARED,
        **PLATEAU,
        "synth-docs": 12,
        "max-length": 128,
        "stride": 32,
        "rounds": 10,
        "epochs": 10,
        "local-epochs": 1,
        "batch-size": 32,
        "lr": 5e-4,
        "head-lr": 2e-3,
        "lora-rank": 4,
        "importance-batches": 1,
    },
    sweep=Sweep(
        other_task_methods=("centralized", "fedavg", "layerskip"),
        layer_counts=(1, 2, 3),
        strategies=("top", "bottom"),
        partitions=(IID, dirichlet(0.3), NATURAL),
        epsilons=(8.0, 1.0),
        privacy_methods=("layerskip",),
        noniid_methods=("layerskip",),
        task_settings={
            "classification": {
                "synth-docs": 300,
                "min-rounds": ICD9_MIN_ROUNDS["paper-quick"],
                **ICD9_SETTINGS,
            }
        },
        method_settings={"lora": LORA_SETTINGS},
        candidates={"centralized": CENTRALIZED_SCHEDULES},
        partial_settings=PARTIAL_SETTINGS,
        partial_lr_blocks=PARTIAL_LR_BLOCKS,
        same_blocks=True,
        seeds=SEEDS,
    ),
)

SUITES: dict[str, Suite] = {s.name: s for s in (SMOKE, PAPER, PAPER_QUICK)}


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError(f"--suite: {name!r} is not one of {', '.join(SUITES)}") from None


# --------------------------------------------------------------------------- extension point
GroupBuilder = Callable[[Suite, Config, int], list[BenchConfig]]
"""``builder(suite, base_config, num_blocks) -> configs`` for an extra group (e.g. the
k x LoRA-rank x compression frontier). Names must follow ``<task>-<method>-<variant>``."""

_EXTRA_GROUPS: dict[str, GroupBuilder] = {}


def register_group(name: str, builder: GroupBuilder) -> None:
    """Add a group to every suite's expansion (the ``frontier`` group plugs in here)."""
    _EXTRA_GROUPS[name] = builder


def registered_groups() -> dict[str, GroupBuilder]:
    return dict(_EXTRA_GROUPS)


# --------------------------------------------------------------------------- expansion
def expand(suite: Suite, base: Config, num_blocks: int) -> list[BenchConfig]:
    """Every configuration of ``suite`` (de-duplicated by name, groups merged), in run order:
    methods first, so that a suite run in pieces has its references early."""
    sweep = suite.sweep
    entries: list[BenchConfig] = []
    for task in sweep.tasks:
        methods = sweep.methods
        if task != sweep.ablation_task and sweep.other_task_methods is not None:
            methods = sweep.other_task_methods
        for method in methods:
            entries.append(_method_entry(task, method, base, num_blocks))
    if sweep.ablation_task in sweep.tasks:
        entries += _layer_entries(sweep, base, num_blocks)
        entries += _strategy_entries(sweep, base)
        entries += _noniid_entries(sweep)
        entries += _privacy_entries(sweep)
    if sweep.same_blocks:
        entries += _same_block_entries(sweep, base, num_blocks)
    for group, builder in _EXTRA_GROUPS.items():
        for entry in builder(suite, base, num_blocks):
            entry.groups = entry.groups or [group]
            entries.append(entry)
    merged = _merge([_with_defaults(sweep, e, base, num_blocks) for e in entries], base)
    merged = _with_candidates(sweep, merged)
    return merged + _seed_replicas(sweep, merged, base)


def _with_candidates(sweep: Sweep, entries: Sequence[BenchConfig]) -> list[BenchConfig]:
    """Each config of a method with ``candidates``: with the first candidate's settings under its
    own name, then once per other candidate as ``<name>-<suffix>`` (labels ``candidate`` and
    ``candidate_for``: the run it is an alternative to)."""
    out = []
    for entry in entries:
        options = sweep.candidates.get(str(entry.settings.get("method", "")), ())
        if not options:
            out.append(entry)
            continue
        for i, option in enumerate(options):
            labels: dict[str, Scalar] = {**entry.labels, "candidate": option.label}
            name = entry.name
            if i:
                name = f"{entry.name}-{option.suffix}"
                labels["candidate_for"] = entry.name
            settings = {**entry.settings, **option.settings}
            out.append(BenchConfig(name, settings, list(entry.groups), labels))
    return out


def _with_defaults(sweep: Sweep, entry: BenchConfig, base: Config, num_blocks: int) -> BenchConfig:
    """``entry`` with its task's, method's and (when it trains only some blocks) the partial
    suite settings under its own settings."""
    task = str(entry.settings.get("task", sweep.ablation_task))
    method = str(entry.settings.get("method", ""))
    layers = int(entry.settings.get("layers", base.layers))
    partial = method in ("layerskip", "centralized") and layers < num_blocks
    settings = {
        **sweep.task_settings.get(task, {}),
        **sweep.method_settings.get(method, {}),
        **(partial_settings(sweep, layers) if partial else {}),
        **entry.settings,
    }
    return BenchConfig(entry.name, settings, entry.groups, entry.labels)


def partial_settings(sweep: Sweep, k: int) -> dict[str, Scalar]:
    """The ``partial_settings`` of a run that trains ``k`` (< all) blocks, its ``lr`` scaled
    down for k > ``partial_lr_blocks`` (see :class:`Sweep`)."""
    settings = dict(sweep.partial_settings)
    lr = settings.get("lr")
    if sweep.partial_lr_blocks and k > sweep.partial_lr_blocks and isinstance(lr, float):
        settings["lr"] = float(f"{lr * sweep.partial_lr_blocks / k:.3g}")
    return settings


FULL_MODEL_BASELINES = ("centralized", "local", "fedprox")
"""Baselines that fine-tune every block (``layers`` = all): centralized is the upper bound
layer skipping is compared with, local-only and FedProx are full-model baselines like FedAvg."""


def _method_entry(task: str, method: str, base: Config, num_blocks: int) -> BenchConfig:
    settings: dict[str, Scalar] = {"task": task, "method": method}
    if method in FULL_MODEL_BASELINES:
        settings["layers"] = num_blocks
    if method in ("centralized", "local"):
        settings["epochs"] = base.rounds * base.local_epochs  # same passes as a federated client
    settings["lora-rank"] = (base.lora_rank or 8) if method == "lora" else 0
    labels: dict[str, Scalar] = {"partition": NATURAL.label}
    return BenchConfig(f"{task}-{method}", settings, ["methods"], labels)


def _layer_entries(sweep: Sweep, base: Config, num_blocks: int) -> list[BenchConfig]:
    task = sweep.ablation_task
    counts = sweep.layer_counts or tuple(range(1, num_blocks + 1))
    out = []
    settings: dict[str, Scalar]
    for k in counts:
        if not 1 <= k <= num_blocks:
            raise ConfigError(f"layer ablation: k={k} outside 1..{num_blocks} blocks")
        if k == base.layers:
            name, settings = f"{task}-layerskip", {"task": task, "method": "layerskip"}
        elif k == num_blocks:  # every block trained = full fine-tuning, i.e. the FedAvg run
            name, settings = f"{task}-fedavg", {"task": task, "method": "fedavg"}
        else:
            name = f"{task}-layerskip-k{k}"
            settings = {"task": task, "method": "layerskip", "layers": k}
        out.append(BenchConfig(name, {**settings, "lora-rank": 0}, ["layers"], {"k": k}))
    return out


def _strategy_entries(sweep: Sweep, base: Config) -> list[BenchConfig]:
    task = sweep.ablation_task
    out = []
    for strategy in sweep.strategies:
        same = strategy == base.layer_strategy
        name = f"{task}-layerskip" if same else f"{task}-layerskip-{strategy}"
        settings: dict[str, Scalar] = {"task": task, "method": "layerskip", "lora-rank": 0}
        if not same:
            settings["layer-strategy"] = strategy
        out.append(BenchConfig(name, settings, ["strategies"], {"strategy": strategy}))
    return out


def _noniid_entries(sweep: Sweep) -> list[BenchConfig]:
    task = sweep.ablation_task
    out = []
    for method in sweep.noniid_methods:
        for part in sweep.partitions:
            name = f"{task}-{method}" + ("" if part == NATURAL else f"-{part.label}")
            settings: dict[str, Scalar] = {"task": task, "method": method, **part.settings}
            if method != "lora":
                settings["lora-rank"] = 0
            out.append(BenchConfig(name, settings, ["noniid"], {"partition": part.label}))
    return out


def _privacy_entries(sweep: Sweep) -> list[BenchConfig]:
    """No DP (the plain run) and DP-SGD at each target ε: the privacy package's sweep settings
    (:func:`fedskip.privacy.sweep.sweep_settings`; σ is planned from the run's rounds, local
    epochs and data size to spend at most ε at the config's δ)."""
    from fedskip.privacy.sweep import sweep_settings

    task = sweep.ablation_task
    own = "-dp" if sweep.privacy_settings else ""  # its own corpus: not the methods' configs
    out = []
    for variant in sweep.privacy_methods:
        keys = sweep.privacy_variants.get(variant, {"method": variant})
        for eps in (None, *sweep.epsilons):
            base: dict[str, Scalar] = {"task": task, "method": variant, "lora-rank": 0, **keys}
            settings: dict[str, Scalar] = {
                **base,
                **sweep.privacy_settings,
                **sweep_settings(eps),
            }
            name = f"{task}-{variant}{own}" + ("" if eps is None else f"-eps{eps:g}")
            labels: dict[str, Scalar] = {"target_epsilon": eps or 0}
            groups = ["privacy"]
            if eps in sweep.privacy_seed_epsilons:
                groups.append("privacy-seeds")
            out.append(BenchConfig(name, settings, groups, labels))
    return out + _client_dp_entries(sweep)


def _client_dp_entries(sweep: Sweep) -> list[BenchConfig]:
    """Client-level DP-FedAvg (a hospital's whole contribution protected) over
    ``client_dp_clients`` simulated clients, at each ε and without DP."""
    from fedskip.privacy.sweep import sweep_settings

    if sweep.client_dp_clients <= 0:
        return []
    task, out = sweep.ablation_task, []
    own = sweep.privacy_settings if sweep.client_dp_settings is None else sweep.client_dp_settings
    for method in sweep.client_dp_methods or sweep.privacy_methods:
        for eps in (None, *(sweep.client_dp_epsilons or sweep.epsilons)):
            settings: dict[str, Scalar] = {
                "task": task,
                "method": method,
                "lora-rank": 0,
                **own,
                "partition": "iid",
                "clients": sweep.client_dp_clients,
                **sweep_settings(eps, dp="client"),
            }
            name = f"{task}-{method}-cdp" + ("" if eps is None else f"-eps{eps:g}")
            labels: dict[str, Scalar] = {"target_epsilon": eps or 0, "partition": "iid"}
            out.append(BenchConfig(name, settings, ["client-dp"], labels))
    return out


def _same_block_entries(sweep: Sweep, base: Config, num_blocks: int) -> list[BenchConfig]:
    """Centralized training of the blocks each layer-skipping k trains (same layer strategy):
    every k of the layer axis on the ablation task, the default k on the other tasks. k = all
    blocks is the centralized full fine-tuning run of the methods group."""
    counts = {task: {base.layers} for task in sweep.tasks}
    if sweep.ablation_task in counts:
        counts[sweep.ablation_task] |= set(sweep.layer_counts or range(1, num_blocks + 1))
    out = []
    for task in sweep.tasks:
        methods = sweep.methods
        if task != sweep.ablation_task and sweep.other_task_methods is not None:
            methods = sweep.other_task_methods
        if "layerskip" not in methods and task != sweep.ablation_task:
            continue
        for k in sorted(counts[task]):
            name = f"{task}-centralized" if k == num_blocks else f"{task}-centralized-k{k}"
            settings: dict[str, Scalar] = {
                "task": task,
                "method": "centralized",
                "layers": k,
                "epochs": base.rounds * base.local_epochs,
                "lora-rank": 0,
            }
            labels: dict[str, Scalar] = {"partition": NATURAL.label, "k": k}
            out.append(BenchConfig(name, settings, ["gaps"], labels))
    return out


SEED_SUFFIX = "-s{seed}"
"""A seed replica's name: ``<name>-s<seed>``."""


def _seed_replicas(sweep: Sweep, entries: Sequence[BenchConfig], base: Config) -> list[BenchConfig]:
    """Each ``seed_groups`` config again with every seed of ``sweep.seeds`` but the suite's."""
    out = []
    for seed in sweep.seeds:
        if seed == base.seed:
            continue
        for entry in entries:
            groups = [g for g in entry.groups if g in sweep.seed_groups]
            if not groups:
                continue
            suffix = SEED_SUFFIX.format(seed=seed)
            name = entry.name + suffix
            labels = {**entry.labels, "variant": entry.name}
            if "candidate_for" in labels:  # the alternative to the same seed's run
                labels["candidate_for"] = f"{labels['candidate_for']}{suffix}"
            out.append(BenchConfig(name, {**entry.settings, "seed": seed}, groups, labels))
    return out


def _merge(entries: Sequence[BenchConfig], base: Config) -> list[BenchConfig]:
    """One entry per name, groups and labels merged. Two entries under one name must resolve to
    the same config (over ``base``); anything else is a bug in a builder."""
    merged: dict[str, BenchConfig] = {}
    resolved: dict[str, dict[str, Scalar]] = {}
    for entry in entries:
        run_config = resolve(base, entry.settings).to_run_config()
        seen = merged.get(entry.name)
        if seen is None:
            merged[entry.name] = BenchConfig(
                entry.name, dict(entry.settings), list(entry.groups), dict(entry.labels)
            )
            resolved[entry.name] = run_config
            continue
        if resolved[entry.name] != run_config:
            diff = sorted(k for k in run_config if run_config[k] != resolved[entry.name].get(k))
            raise ValueError(f"bench config {entry.name!r} defined twice, differing in {diff}")
        seen.groups += [g for g in entry.groups if g not in seen.groups]
        seen.labels.update(entry.labels)
    return list(merged.values())


def resolve(base: Config, settings: dict[str, Scalar]) -> Config:
    """``base`` with a config's own settings applied (validated)."""
    return Config.from_mapping(settings, base=base)


def describe(configs: Sequence[BenchConfig]) -> list[dict[str, Any]]:
    """JSON-ready list of configs (for ``suite.json`` and ``--list``)."""
    return [
        {"name": c.name, "groups": c.groups, "settings": c.settings, "labels": c.labels}
        for c in configs
    ]


# [frontier helper] the k x LoRA-rank x compression frontier registers its suite and group
from fedskip.bench import frontier as _frontier  # noqa: E402, F401
from fedskip.bench import personalization as _personalization  # noqa: E402, F401
