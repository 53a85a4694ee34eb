"""Typed schema of the Hydra config.

The yaml files under ``conf/`` are merged onto these dataclasses, so a misspelt key or a value of
the wrong type fails at composition time, before any model or dataset is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Dict, List, Literal, Optional, get_args, get_origin, get_type_hints

from omegaconf import MISSING

# The valid values of each choice, in one place: checks.py lists them in its messages (`choices` reads them off
# the fields). OmegaConf 2.3 refuses a Literal annotation ("Unexpected type annotation"), so a field carries its
# Literal inside Annotated[str, ...], which OmegaConf (reading the hints without extras) sees as a plain str.
Precision = Literal["auto", "bf16", "fp16", "no"]
Sampling = Literal["proportional", "temperature", "uniform"]
Tracker = Literal["tensorboard", "mlflow", "wandb"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune"]  # torch.compile's modes
Attention = Literal["sdpa", "eager", "flash_attention_2"]  # transformers' attention kernels
JointBudget = Literal["matched", "sum"]
TargetSelection = Literal["en_dev", "last", "average"]  # the selections that are one set of weights (not oracle)
MultilingualKind = Literal["translate_train", "mlm"]
StageName = Literal["english", "multilingual", "joint"]
# How the rows of one split in different languages correspond (`aligned`): `id` (the source's ids name the source
# item, the same in every language: PAWS-X), `row` (row k of every language's file is one item: stsb_multi_mt,
# XNLI), `none` (each row is an item of its own). The report resamples items, with all their rows, as one.
Alignment = Literal["id", "row", "none"]
ALIGNMENTS: tuple[str, ...] = get_args(Alignment)


@dataclass
class SplitConfig:
    """Where one split of a source lives; unset fields fall back to the source's own."""

    split: Optional[str] = None  # split name in the source; "dev[:1500]" slices rows as in `datasets`
    format: Optional[str] = None
    path: Optional[str] = None
    name: Optional[str] = None
    languages: Optional[List[str]] = None
    columns: Optional[Dict[str, Any]] = None
    fields: Optional[List[str]] = None
    aligned: Optional[Annotated[str, Alignment]] = None  # None: the source's own


@dataclass
class SourceConfig:
    """One way of getting a task's data: the hub, a local directory, or the synthetic stand-in."""

    format: str = "hub"
    path: Optional[str] = None  # hub id, local directory or file; "{lang}" and "{split}" are filled in
    name: Optional[str] = None  # hub config name, may hold "{lang}"
    revision: Optional[str] = None
    languages: Optional[List[str]] = field(default_factory=lambda: ["en"])  # None: any language
    fields: Optional[List[str]] = None  # column names of a file without a header row
    # canonical column -> source column: a name, a dotted path ("question.stem"), a path through a
    # list ("choices.*.text") or a list of those gathered into one list column
    columns: Dict[str, Any] = field(default_factory=dict)
    labels: Optional[Dict[str, int]] = None  # raw label value (as text) -> class id
    score_scale: float = 1.0  # multiply raw regression scores (e.g. 5.0 for STS scaled to 0-1)
    max_examples: Optional[int] = None  # cap on rows read per split and language (streamed corpora)
    splits: Dict[str, SplitConfig] = field(default_factory=dict)  # role (train/dev/test/...) -> split
    # how its languages' rows correspond; None: `id` for the synthetic stand-in (example i is one meaning in every
    # language), else `none`
    aligned: Optional[Annotated[str, Alignment]] = None


@dataclass
class TaskConfig:
    """A labelled dataset with a head and a metric; targets use the same shape."""

    name: str = MISSING
    kind: str = MISSING  # a head kind: a module of xorder.kinds
    description: str = ""
    citation: str = ""  # BibTeX of the dataset (xorder report --cite); never part of a stage hash
    metrics: List[str] = field(default_factory=lambda: ["accuracy"])
    label_names: List[str] = field(default_factory=list)  # empty for regression / QA / MLM
    max_length: Optional[int] = None  # None: trainer.max_length
    score_range: Optional[List[float]] = None  # regression: [low, high] checked on every row
    doc_stride: int = 128  # extractive QA: overlap of windows over long contexts
    train_language: str = "en"
    languages: List[str] = field(default_factory=lambda: ["en"])  # evaluation languages (targets)
    epochs: Optional[float] = None  # targets: training epochs (trainer.target.epochs wins when set)
    evaluations: Optional[int] = None  # targets: evaluations per run, spread evenly (None: trainer.eval_every)
    source: Optional[str] = None  # chosen entry of `sources`; None: data.source if present, else default_source
    default_source: str = "hub"
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    # machine-translated training data for the translate_train multilingual stage
    translation_source: Optional[str] = None
    default_translation_source: Optional[str] = None
    translations: Dict[str, SourceConfig] = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = MISSING
    path: str = MISSING  # hub id, local directory, or builtin:tiny / builtin:minilm
    revision: Optional[str] = None
    languages: Optional[List[str]] = None  # languages the pretrained model covers (None: unknown / many)
    lr_range: Optional[List[float]] = None  # fine-tuning learning rates that suit it; far outside: a warning


@dataclass
class OrderConfig:
    name: str = MISSING
    description: str = ""
    stages: List[Annotated[str, StageName]] = field(default_factory=list)


@dataclass
class MultilingualConfig:
    name: str = MISSING
    kind: Annotated[str, MultilingualKind] = MISSING
    description: str = ""
    languages: Optional[List[str]] = None  # None: every language the source has (translate_train only)
    max_examples_per_language: Optional[int] = None
    mlm_probability: float = 0.15
    text: Optional[TaskConfig] = None  # mlm: where the plain text comes from


@dataclass
class PhaseConfig:
    """How long one kind of stage trains."""

    epochs: Optional[float] = 3.0  # the target's None: its own `epochs`
    max_steps: Optional[int] = None  # stops earlier than `epochs` when set
    lr: Optional[float] = None  # None: trainer.lr
    batch_size: Optional[int] = None
    grad_accum: Optional[int] = None
    eval_examples: Optional[int] = None  # None: trainer.eval_examples; the target: full sets unless set here
    max_examples_per_task: Optional[int] = None  # None: trainer.max_examples_per_task
    early_stopping: bool = True


@dataclass
class TrainerConfig:
    name: str = MISSING
    precision: Annotated[str, Precision] = "auto"
    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: Any = 4  # per process, or "auto": the largest micro-batch that fits, toward effective_batch_size
    grad_accum: int = 8  # with batch_size=auto: ignored (accumulation fills the effective batch)
    effective_batch_size: int = 32  # batch_size=auto: micro-batch x accumulation x processes
    eval_batch_size: int = 64
    max_length: int = 256
    eval_every: int = 1000
    eval_examples: Optional[int] = 500
    patience: int = 30
    save_every: int = 1000
    group_by_length: bool = True
    sampling: Annotated[str, Sampling] = "proportional"
    sampling_temperature: float = 2.0
    max_examples_per_task: Optional[int] = None
    freeze_embeddings: bool = False  # word embeddings get no gradient (small CPU studies: see README)
    log_every: int = 50
    trackers: List[Annotated[str, Tracker]] = field(default_factory=list)
    num_workers: int = 0
    # the target scores its test sets at every evaluation (test learning curves in the stage cache); false: only
    # where a selection can land (best so far on a dev set, the last step, the average), for the same record
    test_every_eval: bool = False
    # speed switches: torch.compile of the encoder in one of its modes (reduce-overhead: with CUDA graphs; None:
    # eager), and the attention kernel transformers uses (None: transformers' default). Both draw dropout
    # differently: in the stage hash when set
    compile: Optional[Annotated[str, CompileMode]] = None
    attention: Optional[Annotated[str, Attention]] = None
    intermediate: PhaseConfig = field(default_factory=PhaseConfig)
    multilingual: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=1.0))
    target: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=None, eval_examples=None))
    # joint stages: `matched` gives the English and the multilingual data the steps the sequential orders give
    # them (intermediate and multilingual epochs and max_steps); `sum` trains intermediate epochs over both together
    joint_budget: Annotated[str, JointBudget] = "matched"
    # the target model as a Hugging Face folder in the record (target_model/, its head's Auto class), with the
    # weights of one selection: en_dev (the zero-shot choice), last or average. Changes no number
    save_target_model: bool = False
    target_model_selection: Annotated[str, TargetSelection] = "en_dev"


@dataclass
class DataConfig:
    source: Optional[str] = None  # preferred source for every task that has it (experiment=demo: synthetic)
    synthetic_examples: int = 2000  # training rows per task and language in the synthetic data


@dataclass
class XorderConfig:
    model: ModelConfig = MISSING
    task: Dict[str, TaskConfig] = field(default_factory=dict)
    order: OrderConfig = MISSING
    multilingual: MultilingualConfig = MISSING
    target: TaskConfig = MISSING
    trainer: TrainerConfig = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 1
    results_dir: str = "results"
    cache_dir: str = "~/.cache/xorder"
    data_root: str = "data"
    force: bool = False
    # GPUs of its own for each cell run beside others on one machine (CUDA_VISIBLE_DEVICES; 0: leave it alone).
    # None: one per cell under the parallel (joblib) launcher, none otherwise.
    gpus_per_job: Optional[int] = None
    # cells that share one GPU (CUDA_VISIBLE_DEVICES slots; checked against the peak memory records measured)
    cells_per_gpu: int = 1


def chosen_source(spec: Any, preferred: str | None, translations: bool = False) -> tuple[str | None, str]:
    """Which named source (or translations) entry a task reads, by the one rule: its own `source` (or
    `translation_source`), else the run-wide `data.source` where the task has it, else its default; and the key
    that chose it. The name may be None (no default) or not in the table: `plan.resolved_source` (when a stage
    reads it) and `checks` (for every table of the config) say so, each naming what to change. `spec`: a
    TaskConfig, typed or composed."""
    own, default = (
        ("translation_source", "default_translation_source") if translations else ("source", "default_source")
    )
    table = spec.translations if translations else spec.sources
    if getattr(spec, own) is not None:
        return getattr(spec, own), own
    if preferred is not None and preferred in table:
        return preferred, "data.source"
    return getattr(spec, default), default


def choices(node: type, name: str) -> tuple[str, ...]:
    """The valid values of a schema field: the Literal its annotation carries, found through Optional, List and
    Annotated; () for a field that is no choice."""

    def literal(hint: Any) -> tuple[str, ...]:
        if get_origin(hint) is Literal:
            return get_args(hint)
        return next((found for arg in get_args(hint) if (found := literal(arg))), ())

    return literal(get_type_hints(node, include_extras=True)[name])


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore, where config.yaml's defaults list finds it."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="xorder_schema", node=XorderConfig)
