"""The registry of tasks, targets, orders and multilingual variants is the config tree itself:
one yaml file per option under ``conf/``. This module composes and lists it."""

from __future__ import annotations

from importlib import resources

from omegaconf import DictConfig, OmegaConf

from xorder import checks
from xorder.config import TaskConfig, register_configs
from xorder.errors import XorderError


def options(group: str) -> list[str]:
    """The option names of a config group, read from the files shipped in the package."""
    folder = resources.files("xorder.conf").joinpath(*group.split("/"))
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose(overrides: list[str] | None = None, hydra_config: bool = False) -> DictConfig:
    """The config that `xorder run OVERRIDES` would get, composed without running anything."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from xorder.records import register_resolvers

    register_configs()
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="xorder.conf", version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []),
                                return_hydra_config=hydra_config)
    except (HydraException, OmegaConfBaseException) as err:
        raise XorderError(" ".join(str(err).split())) from err
    checks.config(cfg)  # every value, as `xorder run` checks it
    return cfg


def expand(args: list[str]) -> list[list[str]]:
    """The override lists of every cell that `xorder run ARGS` would run. With -m: sweeps on the command line
    (a,b,c / range / glob) and the `hydra.sweeper.params` of presets, expanded as Hydra's basic sweeper does.
    Overrides of Hydra itself (launcher, sweep dir) change where cells run, not what they are: left out."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    multirun = any(a in ("-m", "--multirun") for a in args)
    kept = [a for a in args if a not in ("-m", "--multirun") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(kept)
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps and not multirun:
            raise XorderError(f"{sweeps[0]!r} is a sweep: add -m to cover every cell of the grid")
        if not multirun:
            return [kept]
        cells: list[list[str]] = []
        for overrides in [c for batch in BasicSweeper.split_arguments(parsed, None) for c in batch] or [[]]:
            swept = compose_hydra(overrides).hydra.sweeper.get("params") or {}
            given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
            params = [f"{key}={value}" for key, value in swept.items() if key not in given]  # the command line wins
            if not params:
                cells.append(list(overrides))
                continue
            for batch in BasicSweeper.split_arguments(parser.parse_overrides(params), None):
                cells += [[*overrides, *combo] for combo in batch]
        return cells
    except HydraException as err:
        raise XorderError(" ".join(str(err).split())) from err


def compose_hydra(overrides: list[str]) -> DictConfig:
    """Like `compose`, with Hydra's own settings (sweeper parameters, launcher) kept under `hydra`."""
    return compose(overrides, hydra_config=True)


def resolved_source(spec: TaskConfig, preferred: str | None, translations: bool = False) -> str:
    """Which named source a task reads: its own `source`, else the run-wide preference, else its default."""
    chosen = spec.translation_source if translations else spec.source
    table = spec.translations if translations else spec.sources
    default = spec.default_translation_source if translations else spec.default_source
    if chosen is None:
        chosen = preferred if preferred in table else default
    key = "translation_source" if translations else "source"
    what = "machine-translated training data" if translations else "data source"
    valid = ", ".join(sorted(table)) or "none"
    if chosen is None:
        hint = ", or use multilingual=mlm" if translations else ""
        raise XorderError(f"task {spec.name!r} has no default {what} (available: {valid}); choose one with "
                          f"task.{spec.name}.{key}=NAME{hint}")
    if chosen not in table:
        raise XorderError(f"task {spec.name!r} has no {what} named {chosen!r} (available: {valid})")
    return chosen


def describe(args: list[str]) -> str:
    """The listing printed by `xorder tasks`."""
    cfg = compose([f"task=[{','.join(options('task'))}]", *args])
    lines = ["intermediate tasks (task=NAME, several as task=[a,b]; * marks the default source):"]
    for name, spec in cfg.task.items():
        default = spec.translations.get(spec.default_translation_source) if spec.default_translation_source else None
        translated = "" if default is None else f" [{' '.join(default.languages) if default.languages else 'any'}]"
        extra = f"languages: {spec.train_language}; translations: " \
                f"{_names(spec.translations, spec.default_translation_source)}{translated}"
        lines.append(_task_line(name, spec, extra))
    lines += ["", "targets (target=NAME; English training, evaluated per language):"]
    for name in options("target"):
        spec = compose([f"target={name}", *args]).target
        lines.append(_task_line(name, spec, "languages: " + " ".join(spec.languages)))
    lines += ["", "orders (order=NAME): stages before the target"]
    for name in options("order"):
        order = OmegaConf.load(resources.files("xorder.conf").joinpath("order", f"{name}.yaml"))
        lines.append(f"  {name:<19} {' -> '.join([*order.stages, 'target']):<36} {order.description}")
    lines += ["", "multilingual variants (multilingual=NAME):"]
    for name in options("multilingual"):
        variant = OmegaConf.load(resources.files("xorder.conf").joinpath("multilingual", f"{name}.yaml"))
        langs = " ".join(variant.languages) if variant.languages else "the target's languages except English"
        lines.append(f"  {name:<19} {variant.description}; languages: {langs}")
    lines += ["", "models (model=NAME): " + ", ".join(options("model"))]
    lines += ["experiments (experiment=NAME): " + ", ".join(options("experiment"))]
    return "\n".join(lines)


def _names(table: DictConfig, default: str | None) -> str:
    return ", ".join(f"{k}*" if k == default else k for k in table) or "none"


def _task_line(name: str, spec: DictConfig, extra: str) -> str:
    labels = f"{len(spec.label_names)} labels" if spec.label_names else ""
    kind = f"{spec.kind} {labels}".strip()
    return f"  {name:<14} {kind:<28} sources: {_names(spec.sources, spec.default_source):<34} {extra}"
