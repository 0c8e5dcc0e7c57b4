"""Sentiment scorers. Gold of the sentiment task: VADER compound sentiment in [-1, 1] (a lexicon, so exact and
offline). Its independent check: TextBlob's polarity in [-1, 1], a second lexicon from another library with other
words, weights and rules, which no algorithm trains on by default — a policy that games VADER's word list shows
up as a VADER gain TextBlob does not share."""

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


@lru_cache(maxsize=1)
def _textblob():
    from textblob import TextBlob

    return TextBlob


def textblob_reward(prompts, completions, **columns) -> list[float | None]:
    blob = _textblob()
    return [float(blob(as_text(c)).sentiment.polarity) for c in completions]
