"""PPO on CartPole-v1: layerwise against Stable-Baselines3, same hyper-parameters and machine.

Both train ``examples/cartpole_ppo.yaml``'s agent: 8 environments, rollouts of 32 steps,
20 epochs of one 256-sample minibatch, γ 0.98, λ 0.8, clip 0.2 falling linearly, Adam
(ε 1e-8) with the learning rate decaying from 1e-3 along a cosine, tanh MLP [64, 64] with
separate policy and value networks and orthogonal initialisation. Reported: environment
steps per second of training (layerwise: its training clock, evaluation and checkpoints
excluded; SB3: ``learn``'s wall time, no callbacks), and the return of 20 deterministic
evaluation episodes after training, so the two are seen to learn alike.

    .venv/bin/pip install -c /tmp/constraints.txt -r benchmarks/requirements-rl.txt
    .venv/bin/python benchmarks/rl.py                    # 100k steps, seed 0, ~5 min
    .venv/bin/python benchmarks/rl.py --steps 20000 --seeds 0 1 --threads 2

Run it on an idle machine if you can; ``uptime`` before and after shows the load.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXAMPLE = Path(__file__).parent.parent / "examples" / "cartpole_ppo.yaml"


def run_layerwise(steps: int, seed: int, out: Path) -> dict[str, Any]:
    import layerwise as lw

    sets = [f"train.total_steps={steps}", "train.eval_every=0", "train.checkpoint_every=0",
            f"seed={seed}", "train.progress=quiet", f"train.threads={torch.get_num_threads()}"]
    t0 = time.perf_counter()
    run = lw.train(EXAMPLE, output=out / f"layerwise_s{seed}", overrides=sets)
    wall = time.perf_counter() - t0
    t = run.metrics["training"]
    return {"steps": t["env_steps"], "seconds": t["seconds"], "wall": wall,
            "steps_per_second": t["env_steps"] / t["seconds"],
            "eval": run.metrics["evaluation"]["return_mean"]}


def run_sb3(steps: int, seed: int) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import layerwise as lw

    cfg = lw.parse_config(EXAMPLE)
    a = cfg.agent
    n_envs, rollout = cfg.env.num_envs, cfg.agent.n_steps * cfg.env.num_envs
    n = max(1, steps // rollout)  # layerwise runs whole rollouts within total_steps
    lr0 = cfg.train.optimizer.lr

    def lr(p: float) -> float:  # p: SB3's progress remaining, 1 - (k + 1) / n at update k
        k = round(n * (1 - p)) - 1
        return lr0 * 0.5 * (1 + math.cos(math.pi * max(0, k) / n))

    def clip(p: float) -> float:  # layerwise: clip · (1 - k / n) at update k
        return a.clip_range * min(1.0, p + 1 / n)

    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=a.n_steps, batch_size=a.batch_size,
                n_epochs=a.n_epochs, gamma=a.gamma, gae_lambda=a.gae_lambda,
                clip_range=clip, ent_coef=a.ent_coef, vf_coef=a.vf_coef,
                max_grad_norm=a.max_grad_norm, learning_rate=lr, seed=seed, device="cpu",
                policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh,
                               "optimizer_kwargs": {"eps": 1e-8}}, verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=n * rollout)
    seconds = time.perf_counter() - t0
    mean, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=1000),
                              n_eval_episodes=20, deterministic=True)
    return {"steps": n * rollout, "seconds": seconds, "wall": seconds,
            "steps_per_second": n * rollout / seconds, "eval": float(mean)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (layerwise "
                   "picks 1 for this network by itself)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()}")
    rows = []
    for i, seed in enumerate(args.seeds):
        order = ["layerwise", "sb3"] if i % 2 == 0 else ["sb3", "layerwise"]
        for name in order:
            r = run_layerwise(args.steps, seed, args.out) if name == "layerwise" else \
                run_sb3(args.steps, seed)
            rows.append({"framework": name, "seed": seed, **r})
            print(f"{name:>9} seed {seed}: {r['steps']} steps in {r['seconds']:.1f} s = "
                  f"{r['steps_per_second']:.0f} steps/s; eval return {r['eval']:.1f}",
                  flush=True)
    print(f"load after: {os.getloadavg()}\n")
    print("| framework | seed | env steps | training s | env steps/s | eval return (20 ep.) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['framework']} | {r['seed']} | {r['steps']:,} | {r['seconds']:.1f} | "
              f"{r['steps_per_second']:.0f} | {r['eval']:.1f} |")
    for name in ("layerwise", "sb3"):
        sps = [r["steps_per_second"] for r in rows if r["framework"] == name]
        print(f"median {name}: {np.median(sps):.0f} steps/s")


if __name__ == "__main__":
    main()
