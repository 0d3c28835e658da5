"""Prompts for a language-model recommender, written from what the recommender knows.

A prompt holds the session's log as a person would read it, oldest first: the titles of the
movies shown, and for each whether it was watched (clicked) and how it was rated, or skipped.
Nothing hidden enters it (no user vector, satiation or budget): only the observation.
"""

from __future__ import annotations

import re

import pandas as pd
import torch

SYSTEM = "Recommend one movie."


def movie_titles(data) -> list[str]:
    """One short title per item, in item order: no year, no genres (what the LM scores), the
    article moved back to the front ("Ice Storm, The" -> "The Ice Storm"). Some remakes share a
    title once the year is gone (e.g. Cape Fear): the LM cannot tell those apart."""
    return [re.sub(r"^(.*), (The|A|An)$", r"\2 \1", str(t).strip()) for t in data.items["title"]]


def session_text(obs: dict[str, torch.Tensor], titles: list[str], *, last: int = 4) -> list[str]:
    """The session's last ``last`` steps in words, one string per row of ``obs``.

    E.g. "Shown: Star Wars (watched, 5/5); Fargo (skipped). Next?" Ratings are the
    observation's rating / 5, written back in stars. Short, as every token costs compute.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1 step, got {last}")
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
        if steps:
            texts.append(f"Shown: {'; '.join(steps)}. Next?")
        else:
            texts.append("A new session. First movie?")
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
