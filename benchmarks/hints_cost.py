"""What feature hints cost on Pong: a CNN student's training step with and without the teacher's latent recomputed,
against reading stored latents (what storing them would cost instead: 512 floats, 2 KB more per transition).

Run by hand: `python benchmarks/hints_cost.py` (about a minute). Prints ms per gradient step (batch 256, the
default run's torch threads; median of 5 interleaved rounds) and its ratio to plain KL for: plain KL; KL + hints
with the teacher's latent recomputed from the frames (what policykd does); KL + hints from latents already in
memory (what storing them would give). The student's latent comes from its one forward pass in all three.
"""

from __future__ import annotations

import time

import numpy as np
import torch as th
from common import reference


def main() -> None:
    from policykd.distributions import policy_outputs
    from policykd.envs import EnvFactory
    from policykd.losses import kl
    from policykd.run.knowledge import Knowledge, latent, latent_of_forward
    from policykd.students.build import build_student
    from policykd.teachers import load_teacher

    th.set_num_threads(2)
    teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
    venv = EnvFactory("ALE/Pong-v5").make(8, 0)
    frames = [venv.reset()]
    for _ in range(40):
        frames.append(venv.step(np.random.default_rng(0).integers(6, size=8))[0])
    obs = np.concatenate(frames)[:256]
    student = build_student("ppo", venv, (16, 32, 32, 64), seed=0)
    student.policy.to(memory_format=th.channels_last)
    knowledge = Knowledge(teacher.model.policy, None, None, 1.0, 0.0)
    width = knowledge.teacher_latent(obs[:2]).shape[1]
    s_width = latent(student.policy, student.policy.obs_to_tensor(obs[:2])[0]).shape[1]
    knowledge.projection = th.nn.Linear(s_width, width)
    optimizer = th.optim.Adam([*student.policy.parameters(), *knowledge.projection.parameters()], lr=1e-4)
    labels, _ = teacher.label(obs)
    stored = knowledge.teacher_latent(obs)

    def step(hint: str) -> None:
        x = student.policy.obs_to_tensor(obs)[0].to(dtype=th.float32, memory_format=th.channels_last)
        with latent_of_forward(student.policy) as seen:  # the student's latent from its one forward pass
            dist, _ = policy_outputs(student.policy, x)
        loss = kl(dist, labels)
        if hint == "recomputed":
            loss = loss + knowledge.loss(seen[-1], obs)[0]
        elif hint == "stored":
            loss = loss + th.nn.functional.mse_loss(knowledge.projection(seen[-1].flatten(1)), stored)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(f"reference: plain CartPole-v1 loop {reference('CartPole-v1'):,.0f} env steps/s")
    variants, times = ("none", "recomputed", "stored"), {}
    for hint in variants:
        for _ in range(3):
            step(hint)
    for _ in range(5):  # interleaved rounds: other load on the machine weighs on every variant alike
        for hint in variants:
            start = time.perf_counter()
            for _ in range(4):
                step(hint)
            times.setdefault(hint, []).append((time.perf_counter() - start) / 4 * 1000)
    for hint in variants:
        ms = float(np.median(times[hint]))
        print(
            f"hints {hint:>10}: {ms:.1f} ms per gradient step (batch 256, median of 5 rounds), "
            f"{ms / np.median(times['none']):.2f}x plain KL"
        )
    venv.close()


if __name__ == "__main__":
    main()
