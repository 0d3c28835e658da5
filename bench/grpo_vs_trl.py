"""Lesson 09's GRPO step against trl's GRPOTrainer, on the same model, prompts and group size,
side by side in one run; prints seconds per step and the ratio.

.venv/bin/pip install -e '.[bench]'   # trl is a benchmark-only extra
HF_HUB_OFFLINE=1 .venv/bin/python bench/grpo_vs_trl.py [--layers 6] [--prompts 4] [--group 8]

Both fine-tune LoRA adapters (r 8 on q and v) of SmolLM2-135M-Instruct's first ``--layers``
layers with a KL to the reference (the adapters off), on ``--prompts`` prompts written from
session states (the same prompts, in the same order, for both), ``--group`` recommendations per
prompt, the same learning rate and KL coefficient, on the reward "the recommended movie is a
comedy". The two do different work for a step, which is the point of the comparison:

- recrl scores the retriever's C candidate titles after each prompt (one packed forward pass
  for the policy, one for the reference, one backward) and draws the group from that
  distribution: the draws are free;
- trl generates ``--group`` free-text completions per prompt token by token, then scores them
  (policy, reference, backward). A completion that is not a catalogue title earns 0.

The script also prints trl's ``frac_reward_zero_std``: groups where every completion earned the
same reward teach nothing.

Measured on the 2-core CPU (trl 1.16.0, 6 layers, 4 prompts x 8): recrl 1.05 s a step, trl
14.11 s (13.5x), trl's frac_reward_zero_std 1.0 at every step (no generated title matched).
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
from recrl_lib.encoders.language_model import load_language_model
from recrl_lib.encoders.prompts import SYSTEM, movie_titles, session_text
from recrl_lib.envs import SimulatorConfig, UserSimulator, build_world


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=6, help="0: all 30")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="the first is a warm-up")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2: the first step is a warm-up, left out of the mean")
    try:
        import trl

        import datasets
    except ImportError as error:
        message = f"{error}: install the bench extra, .venv/bin/pip install -e '.[bench]'"
        raise SystemExit(message) from None
    from peft import LoraConfig

    device = get_device()
    data = load_movielens_100k()
    world = build_world(data, seed=0, progress=False)
    titles, retriever = movie_titles(data), most_popular(catalogue_stats(data))
    comedy = torch.tensor(data.genre_matrix[:, list(data.genres).index("Comedy")] > 0)
    comedy_titles = {t for t, c in zip(titles, comedy.tolist()) if c}
    pool, _ = split_users(world.n_users, seed=0)
    sim = UserSimulator(world, SimulatorConfig(), batch_size=64, seed=0, user_pool=pool)
    layers = args.layers or None
    model, tokenizer = load_language_model(n_layers=layers, device=device)
    n_layers = model.config.num_hidden_layers
    print(
        f"device {device}, {n_layers} layers, {args.prompts} prompts x {args.group} per group, "
        f"trl {trl.__version__}"
    )

    # The same prompts for both, in the same order: step k reads states[k].
    states = [
        sample_session_states(sim, retriever, args.prompts, max_steps=10, seed=step)
        for step in range(args.steps)
    ]

    # recrl: candidates scored, the group drawn from them.
    ours = LMRecommender(
        add_lora(copy.deepcopy(model)),
        tokenizer,
        titles,
        retriever,
        n_candidates=args.candidates,
        temperature=3.0,
    )
    settings = dict(learning_rate=5e-3, kl_coef=0.04)
    history = train_grpo(
        ours,
        lambda step: states[step],
        lambda s, items: comedy.to(items.device)[items].float(),
        GRPOConfig(
            steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, **settings
        ),
        progress=False,
    )
    # a step's time without writing its prompts (trl gets them written)
    step_seconds = history["seconds"] - history["seconds: states and prompts"]
    recrl_step = step_seconds.iloc[1:].mean()

    # trl: free text generated per prompt, from the same prompts' texts.
    prompts = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        for step_states in states
        for text in session_text(step_states.obs, titles)
    ]

    def is_comedy(completions, **kwargs) -> list[float]:
        return [float(c[0]["content"].strip() in comedy_titles) for c in completions]

    step_times: list[float] = []

    class StepTimer(__import__("transformers").TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.start)

    config = trl.GRPOConfig(
        output_dir="build/bench-trl",
        learning_rate=settings["learning_rate"],
        beta=settings["kl_coef"],
        shuffle_dataset=False,  # the prompts in our order
        num_generations=args.group,
        per_device_train_batch_size=args.group,  # one prompt's group per micro-batch
        gradient_accumulation_steps=args.prompts,  # P prompts per optimiser step, as ours
        max_completion_length=16,  # titles are short
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=device.type == "cpu",
        bf16=False,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=copy.deepcopy(model),
        reward_funcs=is_comedy,
        args=config,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
        callbacks=[StepTimer()],
    )
    trainer.train()
    trl_step = sum(step_times[1:]) / max(len(step_times) - 1, 1)
    zero_std = [
        row["frac_reward_zero_std"]
        for row in trainer.state.log_history
        if "frac_reward_zero_std" in row
    ]
    print(f"recrl GRPO step: {recrl_step:6.2f} s (candidates scored, {args.candidates} per prompt)")
    print(f"trl GRPOTrainer: {trl_step:6.2f} s (free text, up to 16 new tokens)")
    print(f"trl / recrl: {trl_step / recrl_step:.1f}x")
    print(f"trl's frac_reward_zero_std per step: {zero_std}")


if __name__ == "__main__":
    main()
