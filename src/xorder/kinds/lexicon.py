"""The synthetic languages: one shared lexicon (living beings and objects, positive, negative and neutral
adjectives, verbs, names spelt alike everywhere) rendered in English words or in pseudo-words of each
language's script and word order. The synthetic stand-ins of every task (`kinds`, `data.synthetic`) and the
tiny model's tokenizer corpus are written in it."""

from __future__ import annotations

import hashlib
import random
from typing import Any

VERSION = 2  # of the synthetic data: changes every synthetic split (and so every stage that reads one)

NOUNS_LIVING = [
    "cat",
    "dog",
    "horse",
    "bird",
    "farmer",
    "teacher",
    "child",
    "doctor",
    "lion",
    "fish",
    "baker",
    "singer",
]
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
    "zh": (
        "",
        "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现",
    ),
}
_SOV = {"ja", "ko", "tr", "hi", "ur"}
_ADJ_AFTER = {"es", "fr", "it", "pt", "vi", "ar", "ur", "th", "sw"}


def seeded(*parts: Any) -> random.Random:
    """A random stream fixed by its name: the same parts give the same draws on every machine."""
    return random.Random(int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _pseudo_word(lang: str, concept: str) -> str:
    consonants, vowels = _SCRIPTS.get(lang, ("bcdfghklmnprstvz", "aeiou"))
    rng = seeded("word", VERSION, lang, concept)
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


def tag(concept: str) -> str:
    """The part-of-speech-like tag of a concept (the synthetic tagging task's labels)."""
    for name, group in (
        ("ADJ_POS", ADJ_POSITIVE),
        ("ADJ_NEG", ADJ_NEGATIVE),
        ("ADJ_NEU", ADJ_NEUTRAL),
        ("NOUN_LIV", NOUNS_LIVING),
        ("NOUN_OBJ", NOUNS_OBJECT),
        ("VERB", VERBS),
        ("NAME", NAMES),
    ):
        if concept in group:
            return name
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


def polarity(adj: str) -> int | None:
    """1 for a positive adjective, 0 for a negative one, None for a neutral one."""
    return 1 if adj in ADJ_POSITIVE else 0 if adj in ADJ_NEGATIVE else None


def random_clause(rng: random.Random, adj: str | None = None, noun: str | None = None) -> list[Any]:
    """[adjective, subject, verb, object adjective, object]: the subject carries the meaning; names, spelt
    alike in every language, appear as objects."""
    adj = adj or rng.choice(ADJ_POSITIVE + ADJ_NEGATIVE)
    noun = noun or rng.choice(NOUNS_LIVING + NOUNS_OBJECT)
    return [adj, noun, rng.choice(VERBS), rng.choice([None, *ADJ_NEUTRAL]), rng.choice(NOUNS_OBJECT + NAMES)]


def opposite(rng: random.Random, adj: str) -> str:
    """An adjective of the other polarity."""
    return rng.choice(ADJ_NEGATIVE if polarity(adj) == 1 else ADJ_POSITIVE)


def same(rng: random.Random, adj: str) -> str:
    """An adjective of the same polarity (possibly the same word)."""
    return rng.choice(ADJ_POSITIVE if polarity(adj) == 1 else ADJ_NEGATIVE)
