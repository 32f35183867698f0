"""Continue training the shipped Pong teacher with SB3 (a long background job, resumable).

    nohup python agents/pong-ppo-v5/continue_training.py --steps 6000000 --ckpt /work/ckpt/pong &

Every --save-every steps it writes `<ckpt>/pong_<steps>.zip` (weights and optimizer) and
`<ckpt>/latest.zip`; re-running the same command resumes from `latest.zip`. Wrappers are
the card's: make_atari_env(ALE/Pong-v5, frameskip=1) x 8 envs + 4-frame stack.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import ale_py
import gymnasium as gym
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

gym.register_envs(ale_py)
HERE = Path(__file__).resolve().parent


class Checkpoint(BaseCallback):
    def __init__(self, folder: Path, every: int):
        super().__init__()
        self.folder, self.every, self.last = folder, every, 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            path = self.folder / f"pong_{self.num_timesteps}.zip"
            self.model.save(path)
            tmp = self.folder / ".latest.tmp.zip"
            self.model.save(tmp)
            os.replace(tmp, self.folder / "latest.zip")
            print(f"{time.strftime('%H:%M:%S')} checkpoint {path}", flush=True)
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6_000_000, help="total env steps to add beyond the shipped model")
    parser.add_argument("--ckpt", default="/work/ckpt/pong")
    parser.add_argument("--save-every", type=int, default=200_000)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    folder = Path(args.ckpt)
    folder.mkdir(parents=True, exist_ok=True)
    start = folder / "latest.zip" if (folder / "latest.zip").exists() else HERE / "pong_ppo_v5.zip"
    env = VecFrameStack(make_atari_env("ALE/Pong-v5", n_envs=8, seed=int(time.time()) % 10_000, env_kwargs={"frameskip": 1}), 4)
    lr = args.lr
    # Linear decay from lr to 0 over the added steps, resumable: it depends on num_timesteps only.
    model = PPO.load(start, env=env, device="cpu", custom_objects={"learning_rate": lr, "clip_range": lambda _: 0.1})
    plan_path = folder / "plan.json"  # the step the continuation started from, kept across resumes
    if plan_path.exists():
        base = json.loads(plan_path.read_text())["base"]
    else:
        base = model.num_timesteps  # steps of the shipped model
        plan_path.write_text(json.dumps({"base": base, "steps": args.steps}))
    end = base + args.steps
    # SB3 passes progress_remaining = (end - num_timesteps) / end when resuming with
    # reset_num_timesteps=False, so this is lr * (end - num_timesteps) / steps.
    steps = args.steps
    model.lr_schedule = lambda progress: min(lr, lr * progress * end / steps)
    model.tensorboard_log = str(folder / "tb")
    remaining = end - model.num_timesteps
    print(f"resuming from {start} at {model.num_timesteps} steps; {remaining} to go", flush=True)
    if remaining > 0:
        model.learn(remaining, reset_num_timesteps=False, callback=Checkpoint(folder, args.save_every), tb_log_name="continue")
    model.save(folder / "final.zip")


if __name__ == "__main__":
    main()
