"""The digest memo (`xorder.storage.integrity`): an untouched file is not read again, `touch` costs one read that finds
the same digest, a same-size edit whose modification time was put back is read again, and what a writer hashed is what
the next run's reader finds (a large cache is not read twice)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from xorder.storage import integrity
from xorder.storage.integrity import Digests


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the memo reads to hash, in order; each test starts as a fresh process (nothing seen yet)."""
    seen: list[Path] = []
    real = integrity.of_file

    def counted(path):
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(integrity, "of_file", counted)
    monkeypatch.setattr(integrity, "_SEEN", {})
    monkeypatch.setattr(integrity, "RACY_NS", 0)  # file times here are older than any read: no racy window
    return seen


def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integrity, "_SEEN", {})


def test_the_memo_reads_a_file_once_per_content_change(tmp_path: Path, reads: list[Path], monkeypatch):
    data = tmp_path / "data.tsv"
    data.write_text("a\tb\t0\nc\td\t1\n")
    digest = Digests(tmp_path / "cache").file(data)
    assert digest == hashlib.sha256(data.read_bytes()).hexdigest() and reads == [data]
    new_process(monkeypatch)
    assert Digests(tmp_path / "cache").file(data) == digest and reads == [data]  # remembered on disk: not read
    os.utime(data)  # touch: read once more, the same digest
    assert Digests(tmp_path / "cache").file(data) == digest and len(reads) == 2
    before = data.stat()
    data.write_text("a\tb\t1\nc\td\t0\n")  # labels swapped: the same size, the modification time put back
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_size == before.st_size and data.stat().st_mtime_ns == before.st_mtime_ns
    new_process(monkeypatch)
    changed = Digests(tmp_path / "cache").file(data)
    assert changed == hashlib.sha256(data.read_bytes()).hexdigest() != digest and len(reads) == 3


def test_a_digest_taken_right_after_a_write_is_not_trusted_later(tmp_path: Path, reads: list[Path], monkeypatch):
    """File times tick coarsely: an edit within the same tick as the read would keep the stamp."""
    monkeypatch.setattr(integrity, "RACY_NS", 10**18)  # every read counts as racy
    data = tmp_path / "data.tsv"
    data.write_text("x")
    Digests(tmp_path / "cache").file(data)
    new_process(monkeypatch)
    Digests(tmp_path / "cache").file(data)
    assert reads == [data, data]


def test_a_written_cache_is_not_read_again_by_its_next_use(
    cache_dir: Path, tmp_path: Path, reads: list[Path], monkeypatch
):
    """The tokenized cache's marker holds the digest its write computed; a warm start hashes nothing."""
    import datasets

    from test_sources import pawsx_task
    from xorder.data.encode import encode, fingerprint
    from xorder.encoders.tiny import ensure
    from xorder.pipeline.model import load_tokenizer

    tokenizer = load_tokenizer(str(ensure(cache_dir)))
    rows = datasets.Dataset.from_list(
        [{"text_a": f"s {i}", "text_b": f"o {i}", "label": i % 2, "id": str(i), "language": "en"} for i in range(20)]
    )
    labels = ["different", "paraphrase"]
    fp = fingerprint("memo", pawsx_task(), tokenizer, 16, True, labels)

    def tokenize():
        return encode(
            rows, pawsx_task(), tokenizer, 16, train=True, label_names=labels, fingerprint=fp, cache_dir=tmp_path
        )

    first = tokenize().to_list()
    arrows = [p for p in reads if p.suffix == ".arrow"]
    assert len(arrows) == 1  # hashed once by the write, not again by the check that follows it
    new_process(monkeypatch)
    assert tokenize().to_list() == first
    assert [p for p in reads if p.suffix == ".arrow"] == arrows  # the next run: not read for its digest
