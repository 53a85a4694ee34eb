"""`model=tiny`: an XLM-R-architecture encoder with random weights and a SentencePiece unigram tokenizer
trained on the synthetic corpus. Built once into cache_dir, the same ids and weights every time, and
loaded like any pretrained model (AutoTokenizer / AutoModel*.from_pretrained(dir))."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VERSION = 2  # 2: XLM-R's 512 positions (SQuAD's 384-token windows fit)
VOCAB_SIZE = 1500
MAX_LENGTH = 512
# Every language the bundled configs name, so that the tokenizer covers every synthetic split.
LANGUAGES = sorted(
    {
        "ar",
        "bg",
        "de",
        "el",
        "en",
        "es",
        "fr",
        "hi",
        "it",
        "ja",
        "ko",
        "nl",
        "pl",
        "pt",
        "ru",
        "sw",
        "th",
        "tr",
        "ur",
        "vi",
        "zh",
    }
)
ARCHITECTURE: dict[str, Any] = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=MAX_LENGTH + 2,
    type_vocab_size=1,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)


def name() -> str:
    """Changes when the builder or the corpus its tokenizer is trained on changes."""
    from xorder.kinds import lexicon

    return f"tiny-v{VERSION}-corpus{lexicon.VERSION}"


def path(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / "models" / name()


def ensure(cache_dir: str | os.PathLike) -> Path:
    """The tiny model's directory, built on first use (once, even by two processes at a time), checked on every use."""
    from xorder.storage.integrity import Digests, build_once

    return build_once(path(cache_dir), build, Digests(cache_dir))


def build(out: Path) -> None:
    """Train the tokenizer on the synthetic corpus, then save a seeded random XLM-R masked-LM model."""
    import sentencepiece as spm
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizer

    out.mkdir(parents=True, exist_ok=True)
    model_proto = io.BytesIO()  # trained in memory: no file paths end up inside the model file
    spm.SentencePieceTrainer.Train(
        sentence_iterator=corpus(LANGUAGES),
        model_writer=model_proto,
        model_type="unigram",
        vocab_size=VOCAB_SIZE,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (out / "sentencepiece.bpe.model").write_bytes(model_proto.getvalue())
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(out), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(str(out))
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **ARCHITECTURE,
    )
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(str(out))


def corpus(languages: list[str], sentences_per_language: int = 400) -> Iterator[str]:
    """Plain text over the synthetic lexicon in every language: what the tokenizer is trained on."""
    from xorder import kinds
    from xorder.kinds import lexicon

    text = kinds.get("mlm").synthetic
    for lang in languages:
        r = lexicon.Renderer(lang)
        yield r.text(list(lexicon.lexicon(lang)))  # every word at least once
        for i in range(sentences_per_language):
            yield text(lexicon.seeded(lexicon.VERSION, "corpus", lang, i), r, r)["text"]
