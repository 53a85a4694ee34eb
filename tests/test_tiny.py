"""model=tiny: built deterministically, XLM-R's tokenizer layout, loadable like any pretrained model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from xorder.encoders import tiny


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_builds_are_byte_identical(tmp_path: Path):
    tiny.build(tmp_path / "a")
    tiny.build(tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert {"config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"} <= set(a)
    assert a == b


def test_loads_with_auto_classes_and_has_xlmr_special_tokens(cache_dir: Path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = tiny.ensure(cache_dir)
    assert tiny.ensure(cache_dir) == path  # built once, then found
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path)
    assert model.config.model_type == "xlm-roberta"
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.mask_token_id == len(tokenizer) - 1 == model.config.vocab_size - 1
    ids = tokenizer("the kind cat sees Anna .", "Anna")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 3 not in ids  # no unknown pieces on the synthetic lexicon
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_a_built_folder_is_shared_whatever_the_saver_made(tmp_path: Path):
    """Savers that write through mkstemp leave 0600 files; a shared cache needs what the umask allows."""
    import os
    import stat

    from xorder.storage.integrity import Digests, build_once

    def build(out: Path) -> None:
        (out / "sub").mkdir(mode=0o700)
        for name in ("config.json", "sub/weights.bin"):
            (out / name).write_text("{}")
            os.chmod(out / name, 0o600)

    umask = os.umask(0o022)
    try:
        target = build_once(tmp_path / "model", build, Digests(tmp_path))
    finally:
        os.umask(umask)
    for item in [target, *target.rglob("*")]:
        assert stat.S_IMODE(item.stat().st_mode) == (0o755 if item.is_dir() else 0o644), item
