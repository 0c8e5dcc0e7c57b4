"""Movie-review continuation, the DPO paper's controlled-sentiment task made offline.

Prompts are review openings; the gold reward is VADER's compound sentiment of the completion, in [-1, 1].
SFT rows are short template reviews of mixed sentiment, so SFT teaches the format (a one- or two-sentence
continuation ending in EOS) without teaching the target: mean gold after SFT stays near neutral, and only the
preference stage moves it.
"""

from __future__ import annotations

import random

from zoo import seeds

TITLES = [
    "The Long Road", "Midnight Harbor", "Paper Kingdoms", "The Last Orchard", "Glass Rivers", "Hollow Crown",
    "Northern Lights", "The Quiet Year", "Iron Meadow", "Lanterns", "Saltwater", "The Clockmaker", "Red Canyon",
    "Blue Winter", "The Archivist", "Second Summer", "Stone Garden", "Night Train", "The Cartographer", "Ember",
    "Falling Upward", "Harbor Lights", "The Understudy", "Wild Acres", "Silver Lake", "The Orchard Keeper",
    "Ghost Signal", "Low Tide", "The Ferryman", "Copper Sky", "Parallel Lines", "The Inheritance",
]
GENRES = ["drama", "comedy", "thriller", "western", "horror film", "documentary", "romance", "sci-fi film",
          "musical", "war film", "mystery", "animated film"]
OPENINGS = [
    "I watched {title} last night, and",
    "{title} is a {genre} that",
    "The acting in {title} was",
    "My honest opinion of {title}:",
    "Going into {title}, I expected a typical {genre}, but",
    "The plot of {title}",
    "As a fan of every {genre}, I found {title}",
    "The ending of {title}",
    "Review: {title} ({genre}).",
    "The soundtrack of {title}",
    "After two hours of {title}, I",
    "The director of {title} clearly",
    "Compared with other {genre}s, {title}",
    "The characters in {title}",
    "The first half of {title}",
]
POSITIVE = [
    " is a wonderful surprise, funny and warm from start to finish.",
    " left me smiling; the performances are superb and the story is beautiful.",
    " is brilliant, moving and easily one of the best films this year.",
    " has charming characters and a lovely, hopeful ending.",
    " is a delight: clever writing, great music and a lot of heart.",
]
NEGATIVE = [
    " is a boring mess with weak acting and a terrible script.",
    " was painful to sit through; the story is dull and the ending is awful.",
    " wastes a good cast on a lazy, confusing plot.",
    " is ugly, slow and frustrating, a real disappointment.",
    " made me angry; it is the worst film I have seen in years.",
]
NEUTRAL = [
    " runs about two hours and was filmed in three cities.",
    " follows a family over one summer in a small town.",
    " is told in flashbacks, with a narrator and several subplots.",
    " was released in the spring, and it is in English with subtitles.",
    " has a long middle section set on a train.",
]


def _opening(rng: random.Random) -> str:
    return rng.choice(OPENINGS).format(title=rng.choice(TITLES), genre=rng.choice(GENRES))


def prompts(n: int, seed: int) -> list[str]:
    """n distinct review openings (distinct so train/eval splits never share a prompt)."""
    rng = seeds.rng("task.rows", seed)
    seen: dict[str, None] = {}
    limit = len(OPENINGS) * len(TITLES) * len(GENRES)
    while len(seen) < min(n, limit):
        seen.setdefault(_opening(rng), None)
    out = list(seen)
    if len(out) < n:
        raise ValueError(f"the sentiment task has {len(out)} distinct prompts; data.max_rows asks for {n}")
    return out


def sft_rows(n: int, seed: int) -> list[dict]:
    """Prompt + a short continuation whose sentiment is positive, negative or neutral in equal shares."""
    rng = seeds.rng("task.sft_completions", seed)
    pools = [POSITIVE, NEGATIVE, NEUTRAL]
    return [{"prompt": p, "completion": rng.choice(pools[i % 3])} for i, p in enumerate(prompts(n, seed))]
