"""Play each shipped agent's games on its env's default evaluation seeds and keep them in the agent's folder
(`returns/`, package data), so that the default run on a fresh machine reads them instead of playing them.

    python benchmarks/keep_teacher_games.py                 # every shipped agent, its preset's default episodes
    python benchmarks/keep_teacher_games.py pong-ppo-v5     # one

An entry is keyed by the teacher's weights, its env stack, the episodes and seed, torch's thread count (as distill
sets it: 1 for MLPs, every core for Atari's CNNs, so Pong's entry serves machines with this one's core count) and
the versions of the libraries that decide its games (`policykd.teachers.evaluated.libraries`): after an upgrade of one
of them, run this again (a stale entry is only never read; each entry lists the facts its key hashed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import torch as th

from policykd.constants import EVAL_SEED_OFFSET
from policykd.envs import is_atari
from policykd.presets import resolve_distill
from policykd.teachers import load_teacher
from policykd.teachers.evaluated import entry_record, play_key, teacher_returns
from policykd.teachers.shipped import AGENTS_DIR, read_card, shipped_agents


def keep(name: str) -> None:
    env_id = read_card(AGENTS_DIR / name).env_id
    settings = resolve_distill(env_id)
    th.set_num_threads(settings.torch_threads or ((os.cpu_count() or 1) if is_atari(env_id) else 1))  # as distill
    teacher = load_teacher(name, env_id=env_id)
    episodes, seed = settings.eval_episodes, settings.seed + EVAL_SEED_OFFSET
    played = teacher_returns(teacher, episodes, seed, cache=False)
    folder = AGENTS_DIR / name / "returns"
    shutil.rmtree(folder, ignore_errors=True)  # entries of older library versions are never read again
    folder.mkdir()
    record = entry_record(teacher, played.returns, episodes, seed)
    (folder / f"{play_key(teacher, episodes, seed)}.json").write_text(json.dumps(record) + "\n")
    print(f"{name}: {env_id}, {episodes} episodes from seed {seed}: {played.returns.mean:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", nargs="*", help="shipped agent names (default: all)")
    names = parser.parse_args().agents or [card.name for card in shipped_agents()]
    for name in names:
        keep(name)


if __name__ == "__main__":
    main()
