"""Bundled synthetic stand-ins for every task, generated deterministically (no downloaded data).

Every language renders one shared lexicon: nouns that are living or objects, adjectives that are positive,
negative or neutral, verbs, and names spelled alike in every language (anchors, as real text has). English
uses English words; other languages get pseudo-words in their own script and word order. Labels are
functions of these meanings (same polarity, same category, the living noun...), so a tiny model learns
each task in seconds in English, and the same examples rendered in other languages (translate-train
data, MLM text) give a multilingual stage something to align. Example i of a split is the same meaning
in every language: translations are parallel.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Callable, Iterator

VERSION = 2

NOUNS_LIVING = ["cat", "dog", "horse", "bird", "farmer", "teacher", "child", "doctor", "lion", "fish", "baker", "singer"]
NOUNS_OBJECT = ["table", "car", "book", "house", "stone", "chair", "phone", "cup", "lamp", "boat", "door", "clock"]
ADJ_POSITIVE = ["good", "happy", "kind", "bright", "calm", "clean", "brave", "gentle"]
ADJ_NEGATIVE = ["bad", "sad", "cruel", "dark", "angry", "dirty", "lazy", "rude"]
ADJ_NEUTRAL = ["big", "small", "old", "new", "red", "blue"]
VERBS = ["sees", "finds", "likes", "follows", "watches", "carries"]
NAMES = ["Anna", "Tom", "Maria", "Leo", "Sara", "Ivan"]
FUNCTION = ["the", "is", "and", "very", "who", "which", "what", "here", "there", "?", "."]


_SCRIPTS: dict[str, tuple[str, str]] = {
    # language -> (consonants, vowels) for pseudo-words; syllabic scripts use a single inventory
    "de": ("bdfgklmnprstwzh", "aeiouäöü"),
    "es": ("bcdfglmnprstvñ", "aeiouá"),
    "fr": ("bcdfglmnprstv", "aeiouéè"),
    "it": ("bcdfglmnprstvz", "aeiou"),
    "nl": ("bdfghklmnprstvwz", "aeiou"),
    "pl": ("bcdfgklmnprstwzł", "aeiouyę"),
    "pt": ("bcdfglmnprstv", "aeiouãç"),
    "sw": ("bdfghjklmnprstvwz", "aeiou"),
    "tr": ("bcdfghklmnprstvyzş", "aeıioöuü"),
    "vi": ("bcdghklmnpqrstvx", "aăâeêioôơuư"),
    "ru": ("бвгджзклмнпрстфх", "аеиоуыэюя"),
    "bg": ("бвгджзклмнпрстфхщ", "аеиоуъюя"),
    "el": ("βγδζθκλμνξπρστφχ", "αεηιουω"),
    "ar": ("بتثجحخدذرزسشصضطظعغفقكلمن", "اوي"),
    "ur": ("بپتٹجچحخدڈرزسشصطعغفقکگلمن", "اوی"),
    "hi": ("कखगघचछजझटठडढतथदधनपफबभमयरलवशसह", "ािीुूेैो"),
    "th": ("กขคงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ", "ะาิีึืุูเแโ"),
    "ja": ("", "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん"),
    "ko": ("", "가나다라마바사아자차카타파하거너더러머버서어저처고노도로모보소오조초"),
    "zh": ("", "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现"),
}
_SOV = {"ja", "ko", "tr", "hi", "ur"}
_ADJ_AFTER = {"es", "fr", "it", "pt", "vi", "ar", "ur", "th", "sw"}


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _pseudo_word(lang: str, concept: str) -> str:
    consonants, vowels = _SCRIPTS.get(lang, ("bcdfghklmnprstvz", "aeiou"))
    rng = _rng("word", VERSION, lang, concept)
    syllables = rng.randint(2, 3)
    if not consonants:  # syllabic or logographic scripts
        return "".join(rng.choice(vowels) for _ in range(syllables - (1 if lang == "zh" else 0)))
    return "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))


def lexicon(lang: str) -> dict[str, str]:
    """English concept -> surface word in `lang`; names are shared, pseudo-words never collide."""
    concepts = NOUNS_LIVING + NOUNS_OBJECT + ADJ_POSITIVE + ADJ_NEGATIVE + ADJ_NEUTRAL + VERBS + FUNCTION
    if lang == "en":
        table = {c: c for c in concepts}
    else:
        table, used = {}, set()
        for concept in concepts:
            if concept in ("?", "."):
                table[concept] = concept if lang not in ("ja", "zh") else {"?": "？", ".": "。"}[concept]
                continue
            word, salt = _pseudo_word(lang, concept), 0
            while word in used or word in NAMES:
                salt += 1
                word = _pseudo_word(lang, f"{concept}#{salt}")
            used.add(word)
            table[concept] = word
    table.update({name: name for name in NAMES})
    return table


def _tag(concept: str) -> str:
    for tag, group in (
        ("ADJ_POS", ADJ_POSITIVE), ("ADJ_NEG", ADJ_NEGATIVE), ("ADJ_NEU", ADJ_NEUTRAL),
        ("NOUN_LIV", NOUNS_LIVING), ("NOUN_OBJ", NOUNS_OBJECT), ("VERB", VERBS), ("NAME", NAMES),
    ):
        if concept in group:
            return tag
    if concept == "the":
        return "DET"
    return "PUNCT" if concept in ("?", ".") else "FUNC"


class Renderer:
    """Turns language-neutral concept sequences into sentences of one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.words = lexicon(lang)

    def phrase(self, adj: str | None, noun: str) -> list[str]:
        if noun in NAMES:
            return [noun]
        parts = [noun] if adj is None else ([noun, adj] if self.lang in _ADJ_AFTER else [adj, noun])
        return ["the", *parts]

    def clause(self, adj: str | None, noun: str, verb: str, adj2: str | None, obj: str) -> list[str]:
        subject, object_ = self.phrase(adj, noun), self.phrase(adj2, obj)
        body = [*subject, *object_, verb] if self.lang in _SOV else [*subject, verb, *object_]
        return [*body, "."]

    def predicate(self, noun: str, adj: str) -> list[str]:
        """'the noun is adj .'"""
        if self.lang in _SOV:
            return [*self.phrase(None, noun), adj, "is", "."]
        return [*self.phrase(None, noun), "is", adj, "."]

    def question(self, *concepts: str) -> list[str]:
        return [*concepts, "?"]

    def tokens(self, concepts: list[str]) -> list[str]:
        return [self.words[c] for c in concepts]

    def text(self, concepts: list[str]) -> str:
        joiner = "" if self.lang in ("ja", "zh") else " "
        return joiner.join(self.tokens(concepts))


def _polarity(adj: str) -> int | None:
    return 1 if adj in ADJ_POSITIVE else 0 if adj in ADJ_NEGATIVE else None


def _random_clause(rng: random.Random, adj: str | None = None, noun: str | None = None) -> list[Any]:
    """[adjective, subject, verb, object adjective, object]: the subject carries the meaning; names, spelt
    alike in every language, appear as objects."""
    adj = adj or rng.choice(ADJ_POSITIVE + ADJ_NEGATIVE)
    noun = noun or rng.choice(NOUNS_LIVING + NOUNS_OBJECT)
    return [adj, noun, rng.choice(VERBS), rng.choice([None, *ADJ_NEUTRAL]), rng.choice(NOUNS_OBJECT + NAMES)]


def _opposite(rng: random.Random, adj: str) -> str:
    return rng.choice(ADJ_NEGATIVE if _polarity(adj) == 1 else ADJ_POSITIVE)


def _same(rng: random.Random, adj: str) -> str:
    return rng.choice(ADJ_POSITIVE if _polarity(adj) == 1 else ADJ_NEGATIVE)


# Each generator draws the meaning of example i from its own random stream and renders it in `r`;
# the same (task, split, i) gives the same meaning in every language.
Example = dict[str, Any]


def _paraphrase(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """The first sentence is positive; the second keeps its meaning (a positive synonym) or flips it."""
    adj, label = rng.choice(ADJ_POSITIVE), rng.randint(0, 1)
    _, noun, verb, adj2, obj = _random_clause(rng, adj)
    other = _same(rng, adj) if label else _opposite(rng, adj)
    return {"text_a": r.text(r.clause(adj, noun, verb, adj2, obj)),
            "text_b": r2.text(r2.clause(other, noun, rng.choice(VERBS), adj2, obj)), "label": label}


def _nli(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """A positive premise; the hypothesis agrees (entailment), says something unrelated (neutral) or
    contradicts it."""
    adj, label = rng.choice(ADJ_POSITIVE), rng.randint(0, 2)  # entailment, neutral, contradiction
    clause = _random_clause(rng, adj)
    hyp_adj = {0: _same(rng, adj), 1: rng.choice(ADJ_NEUTRAL), 2: _opposite(rng, adj)}[label]
    return {"text_a": r.text(r.clause(*clause)), "text_b": r2.text(r2.predicate(clause[1], hyp_adj)), "label": label}


def _duplicate(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """The first question asks about a living being; the second is a duplicate if it does too."""
    noun, label = rng.choice(NOUNS_LIVING), rng.randint(0, 1)
    other = rng.choice(NOUNS_LIVING if label else NOUNS_OBJECT)
    q1 = r.question("which", *r.phrase(rng.choice(ADJ_NEUTRAL), noun), rng.choice(VERBS))
    q2 = r2.question("which", *r2.phrase(rng.choice(ADJ_NEUTRAL), other), rng.choice(VERBS))
    return {"text_a": r.text(q1), "text_b": r2.text(q2), "label": label}


def _sentiment(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    adj = rng.choice(ADJ_POSITIVE + ADJ_NEGATIVE)
    return {"text_a": r.text(r.clause(*_random_clause(rng, adj))), "label": _polarity(adj)}


def _similarity(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """A positive sentence about a living being; the second earns 2.5 for keeping the polarity and 2.5 for
    keeping the category, plus a little noise."""
    adj, noun = rng.choice(ADJ_POSITIVE), rng.choice(NOUNS_LIVING)
    same_pol, same_cat = rng.randint(0, 1), rng.randint(0, 1)
    adj2 = _same(rng, adj) if same_pol else _opposite(rng, adj)
    noun2 = rng.choice(NOUNS_LIVING if same_cat else NOUNS_OBJECT)
    score = min(5.0, max(0.0, 2.5 * same_pol + 2.5 * same_cat + rng.gauss(0.0, 0.25)))
    verb, obj = rng.choice(VERBS), rng.choice(NOUNS_OBJECT)
    return {"text_a": r.text(r.clause(adj, noun, verb, None, obj)),
            "text_b": r2.text(r2.clause(adj2, noun2, verb, None, obj)), "label": round(score, 3)}


def _ending_choice(rng: random.Random, r: Renderer, r2: Renderer, n_choices: int = 4) -> Example:
    """A positive context; the right ending keeps it positive."""
    adj = rng.choice(ADJ_POSITIVE)
    clause = _random_clause(rng, adj)
    label = rng.randrange(n_choices)
    endings = [r.text(r.predicate(clause[1], _same(rng, adj) if i == label else _opposite(rng, adj)))
               for i in range(n_choices)]
    return {"context": r.text(r.clause(*clause)), "choices": endings, "label": label}


def _category_choice(rng: random.Random, r: Renderer, r2: Renderer, n_choices: int = 5) -> Example:
    """'Who ...?': exactly one choice is a living being."""
    label = rng.randrange(n_choices)
    nouns = [rng.choice(NOUNS_LIVING if i == label else NOUNS_OBJECT) for i in range(n_choices)]
    question = r.question("who", rng.choice(VERBS), *r.phrase(None, rng.choice(NOUNS_OBJECT)))
    return {"context": r.text(question), "choices": [r.text([n]) for n in nouns], "label": label}


def _reading_choice(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    example = _ending_choice(rng, r, r2)
    example["question"] = r.text(r.question("what", "is", "there"))
    return example


def _extractive(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    """Several sentences about objects and exactly one living being; the question asks who is there."""
    n_sentences = rng.randint(2, 4)
    answer_at = rng.randrange(n_sentences)
    living = rng.choice(NOUNS_LIVING)
    concepts: list[str] = []
    for i in range(n_sentences):
        noun = living if i == answer_at else rng.choice(NOUNS_OBJECT)
        adj = rng.choice(ADJ_NEUTRAL + ADJ_POSITIVE)
        if i == answer_at:
            answer_index = len(concepts) + r.clause(adj, noun, "sees", None, "cup").index(noun)
        concepts += r.clause(adj, noun, rng.choice(VERBS), None, rng.choice(NOUNS_OBJECT))
    joiner = "" if r.lang in ("ja", "zh") else " "
    start = len(r.text(concepts[:answer_index])) + (len(joiner) if answer_index else 0)
    return {"context": r.text(concepts), "question": r.text(r.question("who", "is", "there")),
            "answers": {"text": [r.words[living]], "answer_start": [start]}}


def _tagging(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    concepts = r.clause(*_random_clause(rng))
    concepts = [c for c in concepts if c is not None]
    return {"tokens": r.tokens(concepts), "tags": [_tag(c) for c in concepts]}


def _text(rng: random.Random, r: Renderer, r2: Renderer) -> Example:
    sentences = [r.text(r.clause(*_random_clause(rng))) for _ in range(rng.randint(1, 3))]
    return {"text": ("" if r.lang in ("ja", "zh") else " ").join(sentences)}


GENERATORS: dict[str, Callable[[random.Random, Renderer, Renderer], Example]] = {
    "pawsx": _paraphrase, "qqp": _duplicate, "mnli": _nli, "anli": _nli, "xnli": _nli, "sst2": _sentiment,
    "sts": _similarity, "hellaswag": _ending_choice, "commonsenseqa": _category_choice, "cosmosqa": _reading_choice,
    "squad": _extractive, "ccg": _tagging, "mlm": _text,
}
BY_KIND = {"classification": "pawsx", "regression": "sts", "multiple_choice": "hellaswag",
            "extractive_qa": "squad", "tagging": "ccg", "mlm": "text"}
SPLIT_SIZES = {"train": 1.0, "dev": 0.25, "test": 0.25, "sts17": 0.125}


def generator_for(task: str, kind: str) -> Callable[[random.Random, Renderer, Renderer], Example]:
    return GENERATORS.get(task) or GENERATORS[BY_KIND[kind] if BY_KIND[kind] in GENERATORS else "mlm"]


def examples(task: str, kind: str, split: str, lang: str, n: int) -> Iterator[Example]:
    """Example i of (task, split) in `lang`; a pair language 'xx-yy' renders text_a in xx and text_b in yy."""
    first, _, second = lang.partition("-")
    r, r2 = Renderer(first), Renderer(second or first)
    generate = generator_for(task, kind)
    for i in range(n):
        example = generate(_rng(VERSION, task, split, i), r, r2)
        yield {"id": f"{task}-{split}-{i}", **example}


def split_size(split: str, train_examples: int) -> int:
    return max(16, int(train_examples * SPLIT_SIZES.get(split, 0.25)))


def materialize(root: str | Path, task: str, kind: str, split: str, lang: str, train_examples: int) -> Path:
    """Write the split as jsonl under `root` (once; the name carries everything that determines it)."""
    from xorder.records import write_atomic

    n = split_size(split, train_examples)
    path = Path(root) / f"v{VERSION}" / task / f"{split}-{lang}-{n}.jsonl"
    if not path.exists():
        lines = (json.dumps(e, ensure_ascii=False) for e in examples(task, kind, split, lang, n))
        write_atomic(path, "\n".join(lines) + "\n")
    return path


def corpus(languages: list[str], sentences_per_language: int = 400) -> Iterator[str]:
    """Plain text over the lexicon in every language: what the tiny model's tokenizer is trained on."""
    for lang in languages:
        r = Renderer(lang)
        yield r.text(list(lexicon(lang)))  # every word at least once
        for i in range(sentences_per_language):
            yield _text(_rng(VERSION, "corpus", lang, i), r, r)["text"]
