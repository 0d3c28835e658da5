"""User-steps per second of the batched simulator vs stepping the same users one by one
through the single-user Gymnasium API, measured side by side in one run.

    .venv/bin/python bench/env_throughput.py            # the real MovieLens world
    .venv/bin/python bench/env_throughput.py --random   # a random world of the same size, no data
"""

from __future__ import annotations

import argparse
import time

import torch

from recrl_lib import get_device
from recrl_lib.envs import RecommenderEnv, SimulatorConfig, UserSimulator, World


def batched_rate(world, config, batch_size, device, seconds=2.0) -> float:
    # Budget high and horizon long: sessions never end, so every step is a full batch of work.
    sim = UserSimulator(world, config, batch_size=batch_size, device=device)
    sim.reset(seed=0)
    g = torch.Generator(device=sim.device).manual_seed(0)
    actions = torch.randint(world.n_items, (64, batch_size), generator=g, device=sim.device)
    for i in range(5):
        sim.step(actions[i])  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sim.step(actions[steps % 64])
        steps += 1
    if sim.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def one_by_one_rate(world, config, n_users, seconds=2.0) -> float:
    envs = [RecommenderEnv(world, config) for _ in range(n_users)]
    for env in envs:
        env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for env in envs:
            env.step(steps % world.n_items)
        steps += n_users
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--random", action="store_true", help="use a random world (no data)")
    args = parser.parse_args()
    if args.random:
        world = World.random(n_users=943, n_items=1682, dim=16, n_genres=19)
    else:
        from recrl_lib.datasets import load_movielens_100k
        from recrl_lib.envs import build_world

        world = build_world(load_movielens_100k(), progress=False)
    config = SimulatorConfig(budget_init=1e9, horizon=10**9)
    device = get_device()
    torch.set_num_threads(torch.get_num_threads())
    loop = one_by_one_rate(world, config, n_users=64)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {world.n_items} items")
    print(f"{'one by one (gymnasium.Env)':>28s}: {loop:12,.0f} user-steps/s")
    for batch_size in (1, 64, 1024, 8192):
        rate = batched_rate(world, config, batch_size, device)
        label = f"batched, batch {batch_size}"
        print(f"{label:>28s}: {rate:12,.0f} user-steps/s  = {rate / loop:8.1f}x one by one")


if __name__ == "__main__":
    main()
