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
- `...+entropy`: any of them with an entropy bonus of 0.01 (rl-zoo's CartPole PPO has none);
- `...+warmup`: any of them with the actor frozen for the first 10 % of the steps, so the critic learns the
  student's returns before the policy moves on its advantages (`policykd.rl.model.warm_up_critic`);
- `...+sharp`: the policy at temperature 1/3 (`--rl-temperature 0.33`);
- `...+slow`: rl-zoo's learning rate at a third (`...+lrK`: times K);
- `...+best`: the kick (adaptive lambda, KL) toward the best snapshot of the student so far, by the evaluations along
  the way (the start first).

Prints one line per run: the greedy returns along the way, the final sampled return and the policy's entropy.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from policykd.envs import EnvFactory
from policykd.rl.kick import Kick
from policykd.rl.model import load_rl_model, rl_config, set_temperature, warm_up_critic
from policykd.teachers.base import SB3Teacher


def start(variant: str, zip_path: Path, env_id: str, seed: int, model_steps: int) -> PPO:
    """The PPO model RL begins from, for `variant`."""
    distilled = PPO.load(zip_path, device="cpu")
    config = rl_config("ppo", env_id, distilled.action_space)
    venv = make_vec_env(env_id, n_envs=config.n_envs, seed=seed)
    net = {"net_arch": distilled.policy_kwargs["net_arch"]}
    fresh = PPO("MlpPolicy", venv, policy_kwargs=net, seed=seed, device="cpu", **config.kwargs)
    name = variant.split("+")[0]
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
    if "+entropy" in variant:
        model.ent_coef = 0.01
    if "+warmup" in variant:
        warm_up_critic(model, model_steps // 10)
    if "+sharp" in variant:  # the distilled policy at temperature 1/3, as --rl-temperature 0.33 sets it
        set_temperature(model, 1 / 3)
    scale = next((float(t[2:]) for t in variant.split("+") if t.startswith("lr")), 1 / 3 if "+slow" in variant else 1)
    if scale != 1:  # rl-zoo's learning-rate schedule, scaled (`+slow`: a third; `+lr0.1`: a tenth)
        schedule = model.lr_schedule
        model.lr_schedule = lambda progress: schedule(progress) * scale
    return model


def snapshot(model: PPO) -> PPO:
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    return PPO.load(buffer, device="cpu")


class BestKick:
    """`+best`: the kick toward the best snapshot so far (the start first), adaptive on the gap to its return."""

    def __init__(self, model: PPO, env_id: str, start_return: float) -> None:
        self.model, self.factory, self.best = model, EnvFactory(env_id), start_return
        self.kick = Kick(
            self._teacher(), "kl", 1.0, None, schedule="adaptive", weight=1.0, total=1, teacher_return=start_return
        )
        self.kick.last_return = start_return
        self.kick.attach(model)

    def _teacher(self) -> SB3Teacher:
        return SB3Teacher("best", "ppo", snapshot(self.model), self.factory)

    def evaluated(self, returns: float) -> None:
        if returns > self.best:
            self.best = returns
            self.kick.teacher, self.kick.teacher_return = self._teacher(), returns
        self.kick.last_return = returns


class Curve(BaseCallback):
    """Greedy returns every `every` env steps on the same evaluation episodes."""

    def __init__(self, env_id: str, every: int, best: BestKick | None = None) -> None:
        super().__init__()
        self.env, self.every, self.returns = make_vec_env(env_id, n_envs=1, seed=10_000), every, []
        self.best = best

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every < self.training_env.num_envs:
            self.returns.append(evaluate_policy(self.model, self.env, n_eval_episodes=10)[0])
            if self.best is not None:
                self.best.evaluated(self.returns[-1])
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
            model = start(variant, args.student, args.env, seed, args.steps)
            best = None
            if "+best" in variant:
                start_return = evaluate_policy(model, make_vec_env(args.env, n_envs=1, seed=10_000), 10)[0]
                best = BestKick(model, args.env, start_return)
            curve = Curve(args.env, 6_000, best)
            model.learn(args.steps, callback=curve)
            final = evaluate_policy(model, curve.env, n_eval_episodes=10)[0]
            sampled = evaluate_policy(model, curve.env, n_eval_episodes=10, deterministic=False)[0]
            obs = th.as_tensor(np.array([model.observation_space.sample() * 0.1 for _ in range(256)]))
            entropy = model.policy.get_distribution(obs).entropy().mean().item()
            along = ", ".join(f"{r:.0f}" for r in curve.returns)
            print(f"| {variant} | {seed} | {along} | {final:.1f} | {sampled:.1f} | {entropy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
