"""Milliseconds per 8-env collection step of Pong (the teacher's labels, a student's greedy action, an env step) for
torch and ALE thread counts: how the network and the env share the cores.

    python benchmarks/pong_collect_loop.py STUDENT_ZIP 2 2     # torch threads, ALE threads
"""

import sys
import time

import torch as th
from stable_baselines3 import PPO

from policykd.native_atari import NativeAtariVecEnv
from policykd.teachers import load_teacher

student_zip, torch_threads, ale_threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
th.set_num_threads(torch_threads)
teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
venv = NativeAtariVecEnv("ALE/Pong-v5", 8, 0, frame_stack=4, env_kwargs={"frameskip": 1}, threads=ale_threads)
student = PPO.load(student_zip, device="cpu")
obs = venv.reset()
for i in range(650):
    if i == 50:
        start = time.perf_counter()
    teacher.label(obs)
    obs = venv.step(student.predict(obs, deterministic=True)[0])[0]
print(f"torch {torch_threads}, ALE {ale_threads}: {(time.perf_counter() - start) / 600 * 1000:.2f} ms per 8-env step")
