"""Prompts for a language-model recommender, written from what the recommender knows.

A prompt holds the session's log as a person would read it, oldest first: the titles of the
movies shown, and for each whether it was watched (clicked) and how it was rated, or skipped.
Nothing hidden enters it (no user vector, satiation or budget): only the observation and, for a
recommender that knows its returning users, what the training split says they liked before
(:func:`user_past`, read by the id in ``obs["user"]``).
"""

from __future__ import annotations

import re

import pandas as pd
import torch

from recrl_lib.datasets import recent_history

SYSTEM = "Recommend one movie."


def movie_titles(data) -> list[str]:
    """One short title per item, in item order: no year, no genres (what the LM scores), the
    article moved back to the front ("Ice Storm, The" -> "The Ice Storm"). Some remakes share a
    title once the year is gone (e.g. Cape Fear): the LM cannot tell those apart."""
    return [re.sub(r"^(.*), (The|A|An)$", r"\2 \1", str(t).strip()) for t in data.items["title"]]


def user_past(data, *, length: int = 3, min_rating: int = 4) -> torch.Tensor:
    """Each user's last ``length`` movies rated at least ``min_rating`` in ``data``'s training
    split (``data.train``: what the recommender knows of its returning users), oldest first
    -> [data.n_users, length] long, −1 where a user has fewer."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    liked = data.train[data.train["rating"] >= min_rating]
    items, _, mask = recent_history(liked, data.n_users, length)  # newest last, padded left
    order = (~mask).long().argsort(dim=1, stable=True)  # the padding to the right
    return items.masked_fill(~mask, -1).gather(1, order)


def session_text(
    obs: dict[str, torch.Tensor],
    titles: list[str],
    *,
    last: int = 4,
    past: torch.Tensor | None = None,
) -> list[str]:
    """The session's last ``last`` steps in words, one string per row of ``obs``.

    E.g. "Shown: Star Wars (watched, 5/5); Fargo (skipped). Next?" Ratings are the
    observation's rating / 5, written back in stars. Short, as every token costs compute.
    With ``past`` ([U, L] from :func:`user_past`) a known user's row starts with what they
    liked before, "Liked before: Fargo; Heat.", read by the id in ``obs["user"]`` (an
    unknown user, id −1, gets none).
    """
    if last < 1:
        raise ValueError(f"last must be >= 1 step, got {last}")
    if past is not None and "user" not in obs:
        raise KeyError(
            "a prompt with the user's past reads who logged in: build the simulator with "
            "SimulatorConfig(observe_user=True)"
        )
    users = obs["user"][:, 0].cpu() if past is not None else None
    items = obs["items"][:, -last:].cpu()
    clicks = obs["clicks"][:, -last:].cpu()
    ratings = obs["ratings"][:, -last:].cpu()
    mask = obs["mask"][:, -last:].cpu()
    texts = []
    for row in range(items.shape[0]):
        steps = []
        for item, click, rating, real in zip(items[row], clicks[row], ratings[row], mask[row]):
            if not real:
                continue
            title = titles[int(item)]
            if click > 0:
                steps.append(f"{title} (watched, {round(float(rating) * 5)}/5)")
            else:
                steps.append(f"{title} (skipped)")
        text = f"Shown: {'; '.join(steps)}. Next?" if steps else "A new session. First movie?"
        if users is not None and 0 <= users[row] < len(past):
            liked = [titles[int(i)] for i in past[users[row]] if i >= 0]
            if liked:
                text = f"Liked before: {'; '.join(liked)}. {text}"
        texts.append(text)
    return texts


def chat_prompts(texts: list[str], tokenizer) -> list[list[int]]:
    """Each text as the user's turn of the model's chat template, ending where the assistant's
    answer (the title) begins -> token ids per text."""
    prompts = []
    for text in texts:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # a BatchEncoding
            ids = ids["input_ids"]
        prompts.append(list(ids))
    return prompts


def title_tokens(titles: list[str], tokenizer) -> list[list[int]]:
    """Each title's token ids as the whole answer the model would write: the title and the
    end-of-turn token (so "Scream" is not scored as a prefix of "Scream 2")."""
    end = getattr(tokenizer, "eos_token", None) or ""
    return [tokenizer(t + end, add_special_tokens=False).input_ids for t in titles]


def describe_candidates(candidates: torch.Tensor, titles: list[str]) -> pd.DataFrame:
    """candidates [B, C] item ids -> a table of titles, one row per prompt."""
    return pd.DataFrame([[titles[int(i)] for i in row] for row in candidates.cpu()])
