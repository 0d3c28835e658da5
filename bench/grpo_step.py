"""Lesson 09's costs, side by side in one run: scoring C candidate titles plainly (one sequence
per title) against packed (one sequence per prompt under a 4-D mask), and one GRPO step with
the first 6 layers of SmolLM2 against all 30; prints seconds and ratios.

HF_HUB_OFFLINE=1 .venv/bin/python bench/grpo_step.py [--prompts 4] [--candidates 8]

trl's GRPOTrainer is not compared here: it generates free text (about 20 s a step on this
CPU when last measured, lesson 09's issue) and is not a dependency of the course.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from recrl_lib import get_device
from recrl_lib.agents import most_popular, split_users
from recrl_lib.agents.grpo import GRPOConfig, train_grpo
from recrl_lib.agents.lm_policy import LMRecommender, add_lora
from recrl_lib.agents.states import sample_session_states
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import catalogue_stats
from recrl_lib.encoders.language_model import (
    candidate_log_likelihoods,
    candidate_log_likelihoods_flat,
    load_language_model,
)
from recrl_lib.encoders.prompts import movie_titles
from recrl_lib.envs import SimulatorConfig, UserSimulator, build_world


def seconds(scorer, *args, repeats: int = 3) -> float:
    """Mean seconds of ``scorer(*args)`` without gradients, after one warm-up call."""
    with torch.no_grad():
        scorer(*args)
        start = time.perf_counter()
        for _ in range(repeats):
            scorer(*args)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=8)
    args = parser.parse_args()
    device = get_device()
    data = load_movielens_100k()
    world = build_world(data, seed=0, progress=False)
    titles, retriever = movie_titles(data), most_popular(catalogue_stats(data))
    pool, _ = split_users(world.n_users, seed=0)
    sim = UserSimulator(world, SimulatorConfig(), batch_size=32, seed=0, user_pool=pool)
    states = sample_session_states(sim, retriever, args.prompts, max_steps=10, seed=0)
    print(f"device {device}, {args.prompts} prompts x {args.candidates} candidates")

    for layers in (6, None):
        model, tokenizer = load_language_model(n_layers=layers, device=device)
        lm = LMRecommender(model, tokenizer, titles, retriever, n_candidates=args.candidates)
        candidates = lm.candidates(states.obs)
        prompts = lm.prompts(states.obs)
        title_ids = lm.title_ids(candidates)
        flat = seconds(candidate_log_likelihoods_flat, model, prompts, title_ids)
        packed = seconds(candidate_log_likelihoods, model, prompts, title_ids)
        tuned = LMRecommender(
            add_lora(copy.deepcopy(model)),
            tokenizer,
            titles,
            retriever,
            n_candidates=args.candidates,
        )
        history = train_grpo(
            tuned,
            lambda step: sample_session_states(
                sim, retriever, args.prompts, max_steps=10, seed=step
            ),
            lambda s, items: torch.ones(items.shape),
            GRPOConfig(steps=4, prompts_per_step=args.prompts),
            progress=False,
        )
        step = history["seconds"].iloc[1:].mean()
        label = f"{layers or model.config.num_hidden_layers} layers"
        print(
            f"{label:>10}: score flat {flat:6.2f} s, packed {packed:6.2f} s "
            f"(packed {flat / packed:4.1f}x faster); one GRPO step {step:6.2f} s"
        )


if __name__ == "__main__":
    main()
