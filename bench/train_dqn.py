"""Wall time for DQN to reach a stated return on the simulator: recrl_lib's batched DQN vs
Stable-Baselines3's DQN on the same simulator through the Gymnasium wrapper, in one run.

    .venv/bin/pip install -e '.[bench]'          # Stable-Baselines3, for this benchmark only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_dqn.py

The world is lesson 04's (clickbait appeal 2). The stated return is most-popular's mean return
on the evaluation users, measured here: "learns to beat popularity". Both agents use the same
hyperparameters (γ 0.9, 3-step returns, lr 3e-4, batch 128, 32 simulated users per step, one
gradient step per vector step, Polyak target updates with τ 0.01 after each, ε 1 → 0.05 over
the first 20% of our step budget) and are evaluated the same way (greedy, every
``--eval-every`` transitions, on the same users); evaluation time is not counted. SB3 runs
twice: on the raw observation (the Dict flattened by ``gymnasium.wrappers.FlattenObservation``:
item ids read as numbers) and on a fair one that carries the same item features our network
reads (mean feature vector of the history, clicks, ratings, step, session totals). A run that
never reaches the return reports its time as a lower bound.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from recrl_lib import get_device, seed_everything
from recrl_lib.agents import (
    DQN,
    DQNConfig,
    EpsilonSchedule,
    RecQNetwork,
    evaluate_policy,
    most_popular,
)
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import ItemTable, TextEncoder, catalogue_stats, item_features, item_texts
from recrl_lib.envs import (
    RecommenderEnv,
    SimulatorConfig,
    TorchVectorEnv,
    UserSimulator,
    build_world,
)
from recrl_lib.envs.gym_env import observation_space, to_numpy

N_ENVS, GAMMA, N_STEP, LR, BATCH, TAU, EPS_FRACTION = 32, 0.9, 3, 3e-4, 128, 0.01, 0.2


def history_features(obs: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Batched numpy obs -> [B, F + 2H + 4]: mean item features of the history ‖ clicks ‖
    ratings ‖ step ‖ session totals (what RecQNetwork reads, as one flat vector)."""
    mask = obs["mask"].astype(np.float32)[..., None]
    mean = (features[obs["items"]] * mask).sum(-2) / np.maximum(mask.sum(-2), 1.0)
    return np.concatenate(
        [mean, obs["clicks"], obs["ratings"], obs["step"], obs["session"]], -1
    ).astype(np.float32)


class FeatureObservation(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, features: np.ndarray):
        super().__init__(env)
        self.features = features
        size = features.shape[1] + 2 * env.observation_space["items"].shape[0] + 4
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def observation(self, obs):
        return history_features(obs, self.features)


def evaluator(world, config, device, n_sessions):
    users = torch.randint(world.n_users, (n_sessions,), generator=torch.Generator().manual_seed(1))
    sim = UserSimulator(world, config, batch_size=n_sessions, device=device)
    return lambda policy: float(evaluate_policy(sim, policy, users=users, seed=1)["return"].mean())


def run_ours(world, config, features, evaluate, target, max_steps, eval_every, device):
    seed_everything(0)
    agent = DQN(
        RecQNetwork(ItemTable(world.n_items, dim=64, text_vectors=features, use_ids=False)),
        DQNConfig(
            gamma=GAMMA,
            n_step=N_STEP,
            lr=LR,
            batch_size=BATCH,
            learning_starts=5_000,
            target_update="polyak",
            tau=TAU,
            epsilon=EpsilonSchedule(1.0, 0.05, int(EPS_FRACTION * max_steps)),
            seed=0,
        ),
        device=device,
    )
    env = TorchVectorEnv(UserSimulator(world, config, batch_size=N_ENVS, seed=0, device=device))
    return train_until(agent, env, evaluate, target, max_steps, eval_every)


def train_until(agent, env, evaluate, target, max_steps, eval_every):
    """Train ``agent`` (ours: DQN or PPO) in chunks of ``eval_every`` transitions until its
    greedy policy reaches ``target``; evaluation time is not counted.
    Returns (seconds, transitions, reached, [(transitions, seconds, return), ...])."""
    seconds, curve = 0.0, []
    while agent.steps < max_steps:
        start = time.perf_counter()
        agent.train(env, eval_every, progress=False)
        seconds += time.perf_counter() - start
        curve.append((agent.steps, seconds, evaluate(agent.policy())))
        print(
            f"  ours  {agent.steps:>8,} steps {seconds:7.1f} s  return {curve[-1][2]:6.2f}",
            flush=True,
        )
        if curve[-1][2] >= target:
            return seconds, agent.steps, True, curve
    return seconds, agent.steps, False, curve


def run_sb3(
    world, config, features, evaluate, target, max_steps, eps_steps, max_seconds, eval_every, label
):
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make_env():
        env = RecommenderEnv(world, config)
        return (
            FeatureObservation(env, features)
            if features is not None
            else gym.wrappers.FlattenObservation(env)
        )

    def policy_for(model):
        def choose(obs):
            batch = to_numpy(obs)
            if features is not None:
                batch = history_features(batch, features)
            else:  # the same flattening FlattenObservation applies, row by row
                space = observation_space(world, config)
                batch = np.stack(
                    [
                        gym.spaces.flatten(space, {k: v[i] for k, v in batch.items()})
                        for i in range(len(batch["step"]))
                    ]
                )
            actions = model.predict(batch, deterministic=True)[0]
            return torch.as_tensor(actions, device=obs["items"].device)

        return choose  # SB3's own argmax: it has no rule against showing a movie twice

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.eval_seconds, self.curve, self.reached = 0.0, [], False
            self.start = time.perf_counter()
            self.next_eval = eval_every

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            pause = time.perf_counter()
            train_seconds = pause - self.start - self.eval_seconds
            value = evaluate(policy_for(self.model))
            self.eval_seconds += time.perf_counter() - pause
            self.curve.append((self.num_timesteps, train_seconds, value))
            line = f"{self.num_timesteps:>8,} steps {train_seconds:7.1f} s  return {value:6.2f}"
            print(f"  {label} {line}", flush=True)
            self.reached = value >= target
            return not self.reached and train_seconds < max_seconds

    vec_env = DummyVecEnv([make_env] * N_ENVS)
    vec_env.seed(0)
    model = SB3DQN(
        "MlpPolicy",
        vec_env,
        learning_rate=LR,
        buffer_size=200_000,
        learning_starts=5_000,
        batch_size=BATCH,
        gamma=GAMMA,
        n_steps=N_STEP,
        train_freq=1,
        gradient_steps=1,
        tau=TAU,
        target_update_interval=N_ENVS,  # SB3 counts env steps: = after every update
        exploration_fraction=eps_steps / max_steps,
        exploration_final_eps=0.05,  # ε as ours
        policy_kwargs={"net_arch": [128]},
        seed=0,
        device="cpu",
    )
    callback = Evaluate()
    model.learn(total_timesteps=max_steps, callback=callback)
    seconds = callback.curve[-1][1] if callback.curve else time.perf_counter() - callback.start
    return seconds, model.num_timesteps, callback.reached, callback.curve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300_000, help="transitions for ours")
    parser.add_argument("--sb3-max-steps", type=int, default=1_000_000, help="transitions for SB3")
    parser.add_argument("--sb3-seconds", type=float, default=350, help="training time cap for SB3")
    parser.add_argument("--eval-every", type=int, default=16_000)
    parser.add_argument("--sessions", type=int, default=512, help="evaluation sessions")
    args = parser.parse_args()

    device = get_device()
    data = load_movielens_100k()
    world = build_world(data, seed=0, progress=False)
    features = item_features(data, TextEncoder().encode(item_texts(data), progress=False).cpu())
    config = SimulatorConfig(clickbait_appeal=2.0)
    evaluate = evaluator(world, config, device, args.sessions)
    target = evaluate(most_popular(catalogue_stats(data)))
    threads = torch.get_num_threads()
    print(f"device {device}, torch threads {threads}; target = most popular's return {target:.2f}")

    results = {
        "recrl_lib DQN (batched)": run_ours(
            world, config, features, evaluate, target, args.max_steps, args.eval_every, device
        )
    }
    cpu_world = world.to("cpu")
    for label, feats in (
        ("SB3 DQN, item features", features.numpy()),
        ("SB3 DQN, raw observation", None),
    ):
        results[label] = run_sb3(
            cpu_world,
            config,
            feats,
            evaluate,
            target,
            args.sb3_max_steps,
            int(EPS_FRACTION * args.max_steps),
            args.sb3_seconds,
            args.eval_every,
            label,
        )

    print(f"\ntime to reach a greedy return of {target:.2f} clicks/session (most popular):")
    ours_seconds, _, ours_reached, _ = results["recrl_lib DQN (batched)"]
    for label, (seconds, steps, reached, curve) in results.items():
        best = max(value for _, _, value in curve) if curve else float("nan")
        when = (
            f"{seconds:7.1f} s" if reached else f"> {seconds:5.1f} s (not reached; best {best:.2f})"
        )
        ratio = (
            ""
            if not ours_reached
            else f"  →  {'' if reached else '≥ '}{seconds / ours_seconds:.1f}x ours"
        )
        print(f"{label:>28s}: {when} after {steps:,} transitions ({steps / seconds:,.0f}/s){ratio}")


if __name__ == "__main__":
    main()
