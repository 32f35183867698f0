"""What the kick costs RL: plain SB3 PPO against PPO with the kick, the same student, hyperparameters and env steps.

Run by hand:

    python benchmarks/kick_cost.py                     # CartPole (the weak teacher) and Pong (the shipped teacher)
    python benchmarks/kick_cost.py --envs CartPole-v1 --repeats 3

In-process, one model per row built the way RL continuation builds it (`policykd.rl.model`: rl-zoo's PPO entry for
the env, the run's env stack), learning the same env steps from the same seed: `plain` without the kick; `one-pass`
with it as PPO students get it (`rl.rollout_kick`: the teacher labels each rollout once, the distillation gradient
joins PPO's backward); `general` with the kick every other student family gets (a teacher call and a second student
forward and backward per minibatch), forced here for comparison. lambda is held at 1 (`constant`) so the kick acts on
every minibatch. The modes run interleaved, `--repeats` times, and each ratio is the median over repeats of
(mode's seconds / plain's seconds in the same repeat). Reference: a plain env loop's steps/s, same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import reference, weak_cartpole_teacher

import policykd.rl.kick as kick_module
from policykd.envs import EnvFactory
from policykd.rl.kick import Kick
from policykd.rl.model import load_rl_model, make_env, rl_config
from policykd.students.build import auto_arch, build_student
from policykd.teachers import load_teacher

STEPS = {"CartPole-v1": 24_576, "ALE/Pong-v5": 8_192}
TEACHERS = {"ALE/Pong-v5": "pong-ppo-v5"}
MODES = ("plain", "one-pass", "general")


def seconds(env_id: str, mode: str, steps: int) -> tuple[float, int]:
    """Wall-clock of `learn(steps)` and the teacher calls the kick made."""
    spec = str(weak_cartpole_teacher()) if env_id == "CartPole-v1" else TEACHERS[env_id]
    teacher = load_teacher(spec, env_id=env_id)
    factory: EnvFactory = teacher.factory
    config = rl_config("ppo", env_id, teacher.action_space)
    single = factory.make(1, 0)
    arch = auto_arch("ppo", single, int(0.05 * teacher.acting_params), min_width=16)
    model = load_rl_model(
        "ppo", build_student("ppo", single, arch, seed=0), make_env(factory, config.n_envs, 0, None), config
    )
    single.close()
    kick = None
    if mode != "plain":
        kick = Kick(teacher, "kl", 1.0, None, schedule="constant", weight=1.0, total=steps, teacher_return=0.0)
        fits = kick_module.fits
        kick_module.fits = fits if mode == "one-pass" else (lambda model: False)
        kick.attach(model)
        kick_module.fits = fits
    start = time.perf_counter()
    model.learn(steps)
    return time.perf_counter() - start, kick.teacher_calls if kick else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(STEPS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("| env | env steps | plain env loop (steps/s) | mode | seconds (each repeat) | teacher calls | x plain |")
    print("|---|---|---|---|---|---|---|")
    for env_id in args.envs:
        ref, steps = reference(env_id), STEPS[env_id]
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        calls: dict[str, int] = {}
        for _ in range(args.repeats):
            for mode in MODES:
                took, calls[mode] = seconds(env_id, mode, steps)
                times[mode].append(took)
        for mode in MODES:
            ratio = statistics.median(t / p for t, p in zip(times[mode], times["plain"]))
            shown = ", ".join(f"{t:.1f}" for t in times[mode])
            print(
                f"| {env_id} | {steps:,} | {ref:,.0f} | {mode} | {shown} | {calls[mode]} | {ratio:.2f}x |", flush=True
            )


if __name__ == "__main__":
    main()
