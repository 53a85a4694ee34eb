"""Typed schema of the Hydra config.

The yaml files under ``conf/`` are merged onto these dataclasses, so a misspelt key or a value of
the wrong type fails at composition time, before any model or dataset is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


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
    stages: List[str] = field(default_factory=list)  # sequence of: english, multilingual, joint


@dataclass
class MultilingualConfig:
    name: str = MISSING
    kind: str = MISSING  # translate_train | mlm
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
    early_stopping: bool = True


@dataclass
class TrainerConfig:
    name: str = MISSING
    precision: str = "auto"  # auto | bf16 | fp16 | no
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
    sampling: str = "proportional"  # proportional | temperature | uniform
    sampling_temperature: float = 2.0
    max_examples_per_task: Optional[int] = None
    freeze_embeddings: bool = False  # word embeddings get no gradient (small CPU studies: see README)
    log_every: int = 50
    trackers: List[str] = field(default_factory=list)  # tensorboard | mlflow | wandb
    num_workers: int = 0
    # speed switches: torch.compile of the encoder in one of its modes (default | reduce-overhead: with CUDA graphs |
    # max-autotune; None: eager), and the attention kernel transformers uses (sdpa | eager | flash_attention_2; None:
    # transformers' default). Both draw dropout differently: in the stage hash when set
    compile: Optional[str] = None
    attention: Optional[str] = None
    intermediate: PhaseConfig = field(default_factory=PhaseConfig)
    multilingual: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=1.0))
    target: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=None, eval_examples=None))
    # joint stages: `matched` gives the English and the multilingual data the steps the sequential orders give
    # them (intermediate and multilingual epochs and max_steps); `sum` trains intermediate epochs over both together
    joint_budget: str = "matched"


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


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore, where config.yaml's defaults list finds it."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="xorder_schema", node=XorderConfig)
