"""The shipped Pong teacher's greedy return under ale-py's vector env (`--atari-stack native`), the first game of
each of N envs seeded SEED, SEED+1, ...: what `policykd evaluate --atari-stack native` plays, timed.

    python benchmarks/pong_native_teacher.py 50 20000     # the 50 held-out games of benchmarks/pong.py
"""

import json
import sys
import time

import numpy as np
import torch as th

from policykd.distributions import env_action
from policykd.native_atari import NativeAtariVecEnv
from policykd.teachers import load_teacher

th.set_num_threads(2)
n, seed = int(sys.argv[1]), int(sys.argv[2])
teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
venv = NativeAtariVecEnv("ALE/Pong-v5", n, seed, frame_stack=4, env_kwargs={"frameskip": 1}, threads=2)
obs, returns, start = venv.reset(), np.full(n, np.nan), time.time()
while np.isnan(returns).any():
    obs, _, _, infos = venv.step(env_action(teacher.label(obs)[0], teacher.action_space))
    for i, info in enumerate(infos):
        if "episode" in info and np.isnan(returns[i]):
            returns[i] = info["episode"]["r"]
print(
    json.dumps(
        {"returns": returns.tolist(), "mean": returns.mean(), "std": returns.std(), "seconds": time.time() - start}
    )
)
