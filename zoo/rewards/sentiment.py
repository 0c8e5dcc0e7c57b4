"""Gold reward of the sentiment task: VADER compound sentiment in [-1, 1] (a lexicon, so exact and offline)."""

from __future__ import annotations

from functools import lru_cache

from zoo.generation import as_text


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader(text: str) -> float:
    return float(_analyzer().polarity_scores(text)["compound"])


def sentiment_reward(prompts, completions, **columns) -> list[float | None]:
    return [vader(as_text(c)) for c in completions]
