"""Why a continued student falls back (issue 32): PPO from a distilled student against PPO from a random one of the
same net, with parts of the distilled student reset one at a time. Run by hand, after a distillation:

    python benchmarks/rl.py cartpole                  # or any run: policykd distill --env CartPole-v1 --teacher weak.zip
    python benchmarks/rl_start.py RUN/student-distilled.zip --variants scratch distilled value optimizer action --seeds 0 1 2

Every variant is the same SB3 `PPO.learn()` with the hyperparameters RL continuation uses (`policykd.rl.model`:
rl-zoo's entry for the env), the same env seeds and the same evaluation episodes (seeds 10000+, greedy, 10 every
6,000 steps); only the start differs:

- `scratch`: a random student of the same net; `distilled`: the zip as it is;
- `value`: the distilled actor with a random critic; `optimizer`: a fresh Adam; `action`: a random action layer;
- `shrinkN`: shrink and perturb (Ash & Adams 2020), N x distilled + (1 - N) x random weights;
- `...+entropy`: any of them with an entropy bonus of 0.01 (rl-zoo's CartPole PPO has none).

Prints one line per run: the greedy returns along the way, the final sampled return and the policy's entropy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from policykd.rl.model import load_rl_model, rl_config


def start(variant: str, zip_path: Path, env_id: str, seed: int) -> PPO:
    """The PPO model RL begins from, for `variant`."""
    distilled = PPO.load(zip_path, device="cpu")
    config = rl_config("ppo", env_id, distilled.action_space)
    venv = make_vec_env(env_id, n_envs=config.n_envs, seed=seed)
    net = {"net_arch": distilled.policy_kwargs["net_arch"]}
    fresh = PPO("MlpPolicy", venv, policy_kwargs=net, seed=seed, device="cpu", **config.kwargs)
    name = variant.removesuffix("+entropy")
    model = fresh if name == "scratch" else load_rl_model("ppo", zip_path, venv, config)
    model.set_random_seed(seed)
    policy, random = model.policy, fresh.policy
    with th.no_grad():
        if name == "value":
            policy.mlp_extractor.value_net.load_state_dict(random.mlp_extractor.value_net.state_dict())
            policy.value_net.load_state_dict(random.value_net.state_dict())
        elif name == "optimizer":
            policy.optimizer = policy.optimizer_class(
                policy.parameters(), lr=model.lr_schedule(1), **policy.optimizer_kwargs
            )
        elif name == "action":
            policy.action_net.load_state_dict(random.action_net.state_dict())
        elif name.startswith("shrink"):
            alpha, weights = float(name.removeprefix("shrink")), random.state_dict()
            for key, param in policy.named_parameters():
                param.mul_(alpha).add_((1 - alpha) * weights[key])
        elif name not in ("scratch", "distilled"):
            raise SystemExit(f"unknown variant {variant!r}")
    if variant.endswith("+entropy"):
        model.ent_coef = 0.01
    return model


class Curve(BaseCallback):
    """Greedy returns every `every` env steps on the same evaluation episodes."""

    def __init__(self, env_id: str, every: int) -> None:
        super().__init__()
        self.env, self.every, self.returns = make_vec_env(env_id, n_envs=1, seed=10_000), every, []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every < self.training_env.num_envs:
            self.returns.append(evaluate_policy(self.model, self.env, n_eval_episodes=10)[0])
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("student", type=Path, help="a distilled PPO student (RUN/student-distilled.zip)")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--variants", nargs="+", default=["scratch", "distilled", "value", "optimizer", "action"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60_000)
    args = parser.parse_args()
    print("| variant | seed | greedy return every 6,000 steps | final (greedy) | final (sampled) | entropy |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants:
        for seed in args.seeds:
            model = start(variant, args.student, args.env, seed)
            curve = Curve(args.env, 6_000)
            model.learn(args.steps, callback=curve)
            final = evaluate_policy(model, curve.env, n_eval_episodes=10)[0]
            sampled = evaluate_policy(model, curve.env, n_eval_episodes=10, deterministic=False)[0]
            obs = th.as_tensor(np.array([model.observation_space.sample() * 0.1 for _ in range(256)]))
            entropy = model.policy.get_distribution(obs).entropy().mean().item()
            along = ", ".join(f"{r:.0f}" for r in curve.returns)
            print(f"| {variant} | {seed} | {along} | {final:.1f} | {sampled:.1f} | {entropy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
