"""The config tree as `xorder run` sees it: xorder's own `conf/` (shipped as the package `xorder.conf`) plus the
user's folders (`--config-dir DIR`, `hydra.searchpath=[...]`), one yaml file per option. This module composes
it, expands a command line into cells and lists it, for the commands that do not run the Hydra app (status,
prepare, tasks). A user folder is carried as one `hydra.searchpath` override, so it travels with every cell."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from xorder import checks
from xorder.config import register_configs
from xorder.errors import XorderError

PACKAGE = "pkg://xorder.conf"
SEARCHPATH = "hydra.searchpath"


@dataclass(frozen=True)
class Arguments:
    overrides: list[str]  # Hydra overrides; --config-dir folded into one hydra.searchpath override
    multirun: bool


def arguments(args: list[str], command: str) -> Arguments:
    """`-m`, `--config-dir DIR` (`-cd`, repeatable) and Hydra overrides, taken as `xorder run` takes them."""
    parser = argparse.ArgumentParser(prog=f"xorder {command}", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("-m", "--multirun", action="store_true")
    parser.add_argument("-cd", "--config-dir", action="append", default=[])
    parser.add_argument("overrides", nargs="*")
    try:
        given, unknown = parser.parse_known_intermixed_args(args)
    except argparse.ArgumentError as err:
        raise XorderError(f"{command}: {err}") from err
    if unknown:
        raise XorderError(
            f"{command} does not take {unknown[0]!r}; it takes Hydra overrides, -m and "
            "--config-dir DIR (as `xorder run` does)"
        )
    for folder in given.config_dir:
        if not os.path.isdir(folder):
            raise XorderError(f"--config-dir {folder}: no such directory")
    entries, overrides = _split_searchpath(given.overrides)
    entries += [f"file://{os.path.abspath(folder)}" for folder in given.config_dir]
    if entries:
        quoted = ",".join("'" + e.replace("\\", "\\\\").replace("'", "\\'") + "'" for e in entries)
        overrides.append(f"{SEARCHPATH}=[{quoted}]")
    return Arguments(overrides, given.multirun)


def _split_searchpath(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the entries of every hydra.searchpath override, the other overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    entries, rest = [], []
    for override in overrides:
        if override.lstrip("+~").split("=", 1)[0] != SEARCHPATH:
            rest.append(override)
            continue
        try:
            value = OverridesParser.create().parse_override(override).value()
        except HydraException as err:
            raise XorderError(" ".join(str(err).split())) from err
        entries += [str(v) for v in (value if isinstance(value, list) else [value])]
    return entries, rest


@contextlib.contextmanager
def _hydra(overrides: list[str]) -> Iterator[tuple[Any, list[str]]]:
    """Hydra initialised on xorder's configs and the folders of `hydra.searchpath` (placed where `xorder run
    --config-dir` places them); yields Hydra's config loader and the other overrides. Cleared on exit, so that a
    Hydra app can start later in the same process."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    from xorder.cell import register_resolvers

    register_configs()
    register_resolvers()
    entries, rest = _split_searchpath(overrides)
    for entry in entries:
        if entry.startswith("file://") and not os.path.isdir(entry[len("file://") :]):
            raise XorderError(f"{SEARCHPATH}: {entry[len('file://') :]} is not a directory")
    search_path = create_config_search_path(PACKAGE)
    for entry in entries:
        search_path.prepend("command-line", entry, anchor=SearchPathQuery(provider="schema"))
    version.setbase("1.3")
    GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name="xorder", config_search_path=search_path)
    try:
        yield GlobalHydra.instance().config_loader(), rest
    finally:
        GlobalHydra.instance().clear()


def _compose(overrides: list[str], hydra_config: bool = False) -> DictConfig:
    """Compose inside `_hydra`, then check every value as `xorder run` does."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    try:
        cfg = hydra_compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)
    except (HydraException, OmegaConfBaseException) as err:
        raise checks.composition_error(err) or XorderError(" ".join(str(err).split())) from err
    except YAMLError as err:
        raise XorderError(f"a config file does not parse: {' '.join(str(err).split())}") from err
    checks.config(cfg)
    return cfg


def compose(overrides: list[str] | None = None, hydra_config: bool = False) -> DictConfig:
    """The config that `xorder run OVERRIDES` would get, composed without running anything."""
    with _hydra(list(overrides or [])) as (_, rest):
        return _compose(rest, hydra_config)


def compose_hydra(overrides: list[str]) -> DictConfig:
    """Like `compose`, with Hydra's own settings (sweeper parameters, launcher) kept under `hydra`."""
    return compose(overrides, hydra_config=True)


def options(group: str, overrides: list[str] | None = None) -> list[str]:
    """The option names of a config group, the user's folders (hydra.searchpath in `overrides`) included."""
    with _hydra(list(overrides or [])) as (loader, _):
        return sorted(loader.get_group_options(group))


def expand(args: list[str], command: str = "run") -> list[list[str]]:
    """The override lists of every cell that `xorder run ARGS` would run. With -m: sweeps on the command line
    (a,b,c / range / glob) and the `hydra.sweeper.params` of presets, expanded as Hydra's basic sweeper does.
    Overrides of Hydra itself (launcher, sweep dir) change where cells run, not what they are: left out, except
    the search path, which says where the options are."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    given = arguments(args, command)
    kept = [
        o for o in given.overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/")) or o.startswith(SEARCHPATH)
    ]
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(kept)
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps and not given.multirun:
            raise XorderError(f"{sweeps[0]!r} is a sweep: add -m to cover every cell of the grid")
        if not given.multirun:
            return [kept]
        cells: list[list[str]] = []
        for overrides in [c for batch in BasicSweeper.split_arguments(parsed, None) for c in batch] or [[]]:
            swept = compose_hydra(overrides).hydra.sweeper.get("params") or {}
            given_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
            params = [f"{key}={value}" for key, value in swept.items() if key not in given_keys]  # command line wins
            if not params:
                cells.append(list(overrides))
                continue
            for batch in BasicSweeper.split_arguments(parser.parse_overrides(params), None):
                cells += [[*overrides, *combo] for combo in batch]
        return cells
    except HydraException as err:
        raise XorderError(" ".join(str(err).split())) from err


def describe(args: list[str]) -> str:
    """The listing printed by `xorder tasks`: every option, those of the user's folders included."""
    given = arguments(args, "tasks")
    if given.multirun:
        raise XorderError("tasks lists the options and takes no -m")
    with _hydra(given.overrides) as (loader, overrides):

        def group(name: str) -> list[str]:
            return sorted(loader.get_group_options(name))

        def raw(name: str, option: str) -> DictConfig:
            return loader.repository.load_config(f"{name}/{option}").config

        cfg = _compose([f"task=[{','.join(group('task'))}]", *overrides])
        lines = ["intermediate tasks (task=NAME, several as task=[a,b]; * marks the default source):"]
        for name, spec in cfg.task.items():
            default = (
                spec.translations.get(spec.default_translation_source) if spec.default_translation_source else None
            )
            translated = "" if default is None else f" [{' '.join(default.languages) if default.languages else 'any'}]"
            extra = (
                f"languages: {spec.train_language}; translations: "
                f"{_names(spec.translations, spec.default_translation_source)}{translated}"
            )
            lines.append(_task_line(name, spec, extra))
        lines += ["", "targets (target=NAME; English training, evaluated per language):"]
        for name in group("target"):
            spec = _compose([f"target={name}", *overrides]).target
            lines.append(_task_line(name, spec, "languages: " + " ".join(spec.languages)))
        lines += ["", "orders (order=NAME): stages before the target"]
        for name in group("order"):
            order = raw("order", name)
            lines.append(
                f"  {name:<19} {' -> '.join([*order.get('stages', []), 'target']):<36} {order.get('description', '')}"
            )
        lines += ["", "multilingual variants (multilingual=NAME):"]
        for name in group("multilingual"):
            variant = raw("multilingual", name)
            languages = variant.get("languages")
            langs = " ".join(languages) if languages else "the target's languages except English"
            lines.append(f"  {name:<19} {variant.get('description', '')}; languages: {langs}")
        lines += ["", "models (model=NAME): " + ", ".join(group("model"))]
        lines += ["experiments (experiment=NAME): " + ", ".join(group("experiment"))]
    return "\n".join(lines)


def _names(table: DictConfig, default: str | None) -> str:
    return ", ".join(f"{k}*" if k == default else str(k) for k in table) or "none"


def _task_line(name: str, spec: DictConfig, extra: str) -> str:
    labels = f"{len(spec.label_names)} labels" if spec.label_names else ""
    kind = f"{spec.kind} {labels}".strip()
    return f"  {name:<14} {kind:<28} sources: {_names(spec.sources, spec.default_source):<34} {extra}"
