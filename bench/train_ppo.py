"""Wall time of recrl_lib's PPO against Stable-Baselines3's PPO, side by side in one run.

    .venv/bin/pip install -e '.[bench]'          # Stable-Baselines3, for this benchmark only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_ppo.py

1. **The recommender** (lesson 05's world and settings): wall time until the greedy policy
   beats most popular's return on the evaluation users. Both agents use lesson 05's
   hyperparameters (64 simulated users, rollouts of 64 steps, a constant lr 1e-3, 2 epochs
   of 2 minibatches, γ 0.9, λ 0.95, clip 0.2, entropy 0.01, value 0.5, gradient norm 0.5,
   target KL 0.02) and are evaluated the same way every
   ``--eval-every`` transitions (evaluation time is not counted). SB3 steps the Gymnasium
   wrapper and reads the item features our network reads, as one flat vector
   (``train_dqn.FeatureObservation``), through SB3's own MLP policy: a plain 1,682-way softmax
   with no item-vector head and no mask against showing a movie twice. So the ratio measures
   the batched simulator, the network and the implementation together, not the PPO code
   alone. SB3's ``target_kl`` stops inside an epoch at 1.5× the target, ours after an epoch.
   One training seed each. A run that never reaches the return reports a lower bound.
2. **CartPole-v1**: both train the same budget with the same settings (8 envs, 128 steps, lr
   2.5e-3 annealed, 4 epochs of 4 minibatches, γ 0.99, λ 0.95), two 64-unit tanh layers,
   separate actor and critic; the mean greedy return over 16 games and the wall time of each.
"""

from __future__ import annotations

import argparse
import time

import torch
from train_dqn import FeatureObservation, evaluator, history_features, train_until

from recrl_lib import get_device, seed_everything
from recrl_lib.agents import PPO, MLPActorCritic, PPOConfig, RecActorCritic, most_popular
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import (
    ItemTable,
    TextEncoder,
    catalogue_stats,
    fit_recommender_mf,
    item_features,
    item_texts,
)
from recrl_lib.envs import (
    RecommenderEnv,
    SimulatorConfig,
    TorchVectorEnv,
    UserSimulator,
    build_world,
)
from recrl_lib.envs.gym_env import to_numpy

N_ENVS, N_STEPS, LR, EPOCHS, MINIBATCHES = 64, 64, 1e-3, 2, 2


def run_ours(world, config, features, evaluate, target, max_steps, eval_every, device):
    seed_everything(0)
    settings = PPOConfig(
        lr=LR, anneal_lr=False, update_epochs=EPOCHS, n_minibatches=MINIBATCHES, seed=0
    )
    agent = PPO(RecActorCritic(ItemTable(world.n_items, dim=64, text_vectors=features)), settings)
    env = TorchVectorEnv(UserSimulator(world, config, batch_size=N_ENVS, seed=0, device=device))
    return train_until(agent, env, evaluate, target, max_steps, eval_every)


def sb3_schedule(lr: float):
    return lambda remaining: lr * remaining  # linear annealing to 0, as ours


def run_sb3(world, config, features, evaluate, target, max_steps, max_seconds, eval_every):
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    def choose(model):
        def act(obs):
            batch = history_features(to_numpy(obs), features)
            actions = model.predict(batch, deterministic=True)[0]
            return torch.as_tensor(actions, device=obs["items"].device)

        return act

    class Evaluate(BaseCallback):
        """Evaluates when a rollout starts, i.e. after the previous update (as ours does)."""

        def __init__(self):
            super().__init__()
            self.eval_seconds, self.curve, self.reached, self.stop = 0.0, [], False, False
            self.start, self.next_eval = time.perf_counter(), eval_every

        def _on_rollout_start(self) -> None:
            if self.num_timesteps < self.next_eval:
                return
            self.next_eval += eval_every
            pause = time.perf_counter()
            seconds = pause - self.start - self.eval_seconds
            value = evaluate(choose(self.model))
            self.eval_seconds += time.perf_counter() - pause
            self.curve.append((self.num_timesteps, seconds, value))
            print(f"  SB3   {self.num_timesteps:>8,} steps {seconds:7.1f} s  return {value:6.2f}")
            self.reached = value >= target
            self.stop = self.reached or seconds >= max_seconds

        def _on_step(self) -> bool:
            return not self.stop

    vec_env = DummyVecEnv(
        [lambda: FeatureObservation(RecommenderEnv(world, config), features)] * N_ENVS
    )
    vec_env.seed(0)
    model = SB3PPO(
        "MlpPolicy",
        vec_env,
        learning_rate=LR,
        n_steps=N_STEPS,
        batch_size=N_ENVS * N_STEPS // MINIBATCHES,
        n_epochs=EPOCHS,
        gamma=0.9,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        target_kl=0.02,
        policy_kwargs={"net_arch": {"pi": [128], "vf": [128]}},
        seed=0,
        device="cpu",
    )
    callback = Evaluate()
    model.learn(total_timesteps=max_steps, callback=callback)
    seconds = callback.curve[-1][1] if callback.curve else time.perf_counter() - callback.start
    return seconds, model.num_timesteps, callback.reached, callback.curve


def greedy_cartpole_return(act) -> float:
    env = TorchVectorEnv.make("CartPole-v1", num_envs=16, device="cpu")
    obs, total, playing = env.reset(seed=123), torch.zeros(16), torch.ones(16, dtype=torch.bool)
    while playing.any():
        obs, _, reward, terminated, truncated = env.step(act(obs))
        total += reward * playing
        playing &= ~(terminated | truncated)
    return total.mean().item()


def cartpole(steps: int) -> dict[str, tuple[float, float]]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    settings = dict(gamma=0.99, gae_lambda=0.95, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
    seed_everything(0)
    env = TorchVectorEnv.make("CartPole-v1", num_envs=8, device="cpu")
    ours = PPO(
        MLPActorCritic(env.obs_dim, env.n_actions),
        PPOConfig(num_steps=128, lr=2.5e-3, total_steps=steps, target_kl=None, seed=0, **settings),
        device="cpu",
    )
    start = time.perf_counter()
    ours.train(env, steps, progress=False)
    results = {
        "recrl_lib PPO": (
            time.perf_counter() - start,
            greedy_cartpole_return(lambda obs: ours.act(obs, greedy=True)),
        )
    }
    model = SB3PPO(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=8, seed=0),
        learning_rate=sb3_schedule(2.5e-3),
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
        seed=0,
        device="cpu",
        **settings,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start

    def sb3_act(obs):
        return torch.as_tensor(model.predict(obs["obs"].numpy(), deterministic=True)[0])

    results["SB3 PPO"] = (seconds, greedy_cartpole_return(sb3_act))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=150_000, help="transitions, simulator")
    parser.add_argument("--sb3-seconds", type=float, default=300, help="SB3's time cap, simulator")
    parser.add_argument("--eval-every", type=int, default=8_192)
    parser.add_argument("--sessions", type=int, default=512, help="evaluation sessions")
    parser.add_argument("--cartpole-steps", type=int, default=60_000)
    args = parser.parse_args()

    device = get_device()
    data = load_movielens_100k()
    world = build_world(data, seed=0, progress=False)
    text = TextEncoder().encode(item_texts(data), progress=False).cpu()
    features = item_features(data, text, mf=fit_recommender_mf(data))
    config = SimulatorConfig(clickbait_appeal=2.0)
    evaluate = evaluator(world, config, device, args.sessions)
    target = evaluate(most_popular(catalogue_stats(data)))
    print(
        f"device {device}, torch threads {torch.get_num_threads()}; target = most popular's "
        f"return {target:.2f}"
    )

    ours = run_ours(
        world, config, features, evaluate, target, args.max_steps, args.eval_every, device
    )
    sb3 = run_sb3(
        world.to("cpu"),
        config,
        features.numpy(),
        evaluate,
        target,
        args.max_steps,
        args.sb3_seconds,
        args.eval_every,
    )
    print(f"\n1. simulator: time to a greedy return of {target:.2f} clicks/session (most popular)")
    for label, (seconds, steps, reached, curve) in (("recrl_lib PPO", ours), ("SB3 PPO", sb3)):
        best = max((value for *_, value in curve), default=float("nan"))
        when = (
            f"{seconds:7.1f} s" if reached else f"> {seconds:5.1f} s (not reached; best {best:.2f})"
        )
        print(f"{label:>16s}: {when} after {steps:,} transitions ({steps / seconds:,.0f}/s)")
    if ours[2]:
        bound = "" if sb3[2] else "≥ "
        ratio = f"{bound}{sb3[0] / ours[0]:.1f}x"
        print(f"{'':>16s}  SB3 / ours = {ratio} (network and simulator included)")

    print(f"\n2. CartPole-v1, {args.cartpole_steps:,} transitions each: wall time, greedy return")
    results = cartpole(args.cartpole_steps)
    for label, (seconds, value) in results.items():
        print(f"{label:>16s}: {seconds:6.1f} s, return {value:6.1f}")
    (ours_s, _), (sb3_s, _) = results["recrl_lib PPO"], results["SB3 PPO"]
    print(f"{'':>16s}  SB3 / ours wall time = {sb3_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
