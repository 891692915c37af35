"""A generator of TinyStories-style stories, written for this project (SYNTHETIC text).

Real TinyStories text cannot be shipped with the package, so the embedded default corpus is
made here: characters with names, animals, objects, places, feelings, simple dialogue and a
moral, with words drawn from Zipf-like distributions over a few thousand distinct words, so
that byte-level BPE reaches 4096 tokens on it. Story ``i`` of seed ``s`` depends only on
``(s, i)``: the corpus is deterministic and can be produced in any batch size.

>>> story = next(generate_stories(1, seed=0))
>>> story == next(generate_stories(1, seed=0))
True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hmm_lang import synthetic_words as W

ZIPF_EXPONENT = 1.1


class _Zipf:
    """Draw from a list, most common first, with weight rank ** -exponent."""

    def __init__(self, items: Sequence[str], exponent: float = ZIPF_EXPONENT):
        self.items = list(items)
        self.cum = list(itertools.accumulate((r + 1) ** -exponent for r in range(len(items))))

    def __call__(self, rng: random.Random) -> str:
        return rng.choices(self.items, cum_weights=self.cum)[0]


def _ing(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    if len(verb) <= 4 and verb[-1] in "pgtnbm" and verb[-2] in "aeiou" and verb[-3] not in "aeiou":
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _plural(noun: str) -> str:
    if noun in ("mouse", "sheep", "fish", "deer", "goose"):
        return {"mouse": "mice", "goose": "geese"}.get(noun, noun)
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith("f"):
        return noun[:-1] + "ves"
    return noun + "s"


# names are many and flatter than words (a long tail of one-off characters, as in TinyStories)
NAMES = _Zipf([h + t for t, h in itertools.product(W.NAME_TAILS, W.NAME_HEADS)], exponent=0.6)
ANIMAL = _Zipf(W.ANIMALS)
OBJECT = _Zipf(W.OBJECTS)
PLACE = _Zipf(W.PLACES)
ADJ = _Zipf(W.ADJECTIVES)
FEEL = _Zipf(W.FEELINGS)
FAMILY = _Zipf(W.FAMILY)
GREET = _Zipf(W.GREETINGS)
NUMBER = _Zipf(W.COLORS_NUMBERS)
VIRTUE = _Zipf(W.VIRTUES)
_VERB_PAIRS = [v.split(":") for v in W.VERBS]
VERB_INDEX = _Zipf([str(i) for i in range(len(_VERB_PAIRS))])


@dataclass
class _Cast:
    hero: str
    he: str
    his: str
    friend: str
    animal: str
    thing: str
    place: str


def _verb(rng: random.Random) -> tuple[str, str, str]:
    base, past = _VERB_PAIRS[int(VERB_INDEX(rng))]
    return base, past, _ing(base)


def _ly(adj: str) -> str:
    if adj.endswith("y"):
        return adj[:-1] + "ily"
    if adj.endswith("le"):
        return adj[:-1] + "y"
    return adj + "ly"


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _opening(rng: random.Random, c: _Cast) -> str:
    return rng.choice(
        [
            f"Once upon a time, there was {_a(ADJ(rng))} {rng.choice(['girl', 'boy'])} named {c.hero}.",
            f"Once upon a time, in {_a(ADJ(rng))} {c.place}, there lived {_a(ADJ(rng))} {c.animal}"
            f" named {c.hero}.",
            f"One day, {c.hero} went to the {c.place} with {c.his} {FAMILY(rng)}.",
            f"{c.hero} was {_a(ADJ(rng))} {c.animal} who lived near the {PLACE(rng)}.",
        ]
    )


def _sentence(rng: random.Random, c: _Cast) -> str:
    base, past, ing = _verb(rng)
    base2, past2, _ = _verb(rng)
    k = rng.randrange(10)
    if k == 0:
        return f"{_cap(c.he)} loved to {base} with {c.his} {ADJ(rng)} {c.thing}."
    if k == 1:
        return f"One day, {c.hero} saw {_a(ADJ(rng))} {OBJECT(rng)} in the {PLACE(rng)}."
    if k == 2:
        return f'"{GREET(rng)}, {c.friend}!" said {c.hero}. "Can we {base} the {c.thing} together?"'
    if k == 3:
        return f"{c.friend} felt {FEEL(rng)}. {_cap(c.he)} {past} and {past2} all day."
    if k == 4:
        return f"But then, the {c.thing} was gone! {c.hero} was very {FEEL(rng)}."
    if k == 5:
        n, obj = NUMBER(rng), OBJECT(rng)
        found = _a(obj) if n == "one" else f"{n} {_plural(obj)}"
        return f"{c.hero} and {c.friend} were {ing} near the {c.place} when they found {found}."
    if k == 6:
        return f'"I want to {base2} the {ADJ(rng)} {ANIMAL(rng)}," {c.he} said to {c.his} {FAMILY(rng)}.'
    if k == 7:
        return (
            f"The {ANIMAL(rng)} {past} {_ly(ADJ(rng))} to the {PLACE(rng)} and {past2} the "
            f"{OBJECT(rng)}."
        )
    if k == 8:
        return f"{c.friend} helped {c.hero} {base} the {c.thing}. They were so {FEEL(rng)}."
    return f'{_cap(c.his)} {FAMILY(rng)} said, "Be {VIRTUE(rng)} and {base2} with care."'


def _ending(rng: random.Random, c: _Cast) -> str:
    return rng.choice(
        [
            f"From that day on, {c.hero} and {c.friend} were best friends.",
            f"The moral of the story is to always be {VIRTUE(rng)}.",
            f"{c.hero} smiled. It was the best day ever.",
            f"In the end, {c.hero} learned to be {VIRTUE(rng)} and {VIRTUE(rng)}.",
            f"That night, {c.hero} went to sleep feeling {FEEL(rng)}.",
        ]
    )


def generate_story(rng: random.Random) -> str:
    """One story: an opening, 4 to 12 sentences in 1 to 3 paragraphs, an ending."""
    hero, friend = NAMES(rng), NAMES(rng)
    he, his = ("he", "his") if rng.random() < 0.5 else ("she", "her")
    cast = _Cast(hero, he, his, friend, ANIMAL(rng), OBJECT(rng), PLACE(rng))
    body = [_sentence(rng, cast) for _ in range(rng.randint(4, 12))]
    cut = sorted(rng.sample(range(1, len(body)), rng.randint(0, 2)))
    paragraphs = [body[i:j] for i, j in zip([0, *cut], [*cut, len(body)], strict=True)]
    paragraphs[0].insert(0, _opening(rng, cast))
    paragraphs[-1].append(_ending(rng, cast))
    return "\n".join(" ".join(p) for p in paragraphs)


def generate_stories(n: int, seed: int = 0) -> Iterator[str]:
    """Stories ``0..n-1`` of ``seed``; each depends only on ``(seed, index)``."""
    for i in range(n):
        yield generate_story(random.Random(seed * 1_000_003 + i))


def vocabulary() -> set[str]:
    """Every distinct word the generator can emit (inflections included)."""
    words = set(NAMES.items) | set(W.ANIMALS) | set(W.OBJECTS) | set(W.PLACES)
    words |= set(W.ADJECTIVES) | set(W.FEELINGS) | set(W.FAMILY) | set(W.GREETINGS)
    words |= set(W.COLORS_NUMBERS) | set(W.VIRTUES)
    words |= {_plural(o) for o in W.OBJECTS} | {_ly(a) for a in W.ADJECTIVES}
    for base, past in _VERB_PAIRS:
        words |= {base, past, _ing(base)}
    return words
