"""The finished teacher: rl-zoo layout, its deterministic evaluation, and its model card (CARD.md, card.yaml).

Separate from `policykd.teachers.train`, which resolves the settings and runs the checkpointed, resumable training:
what is written here happens once, after the last step, from the trained model alone, and card.yaml is written
last because its presence is what marks the run finished.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypedDict

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm

from policykd.constants import EVAL_SEED_OFFSET
from policykd.envs import EnvOptions
from policykd.settings import TrainTeacherSettings
from policykd.storage import atomic_write_text
from policykd.teachers.hyperparams import ZooHyperparams
from policykd.teachers.zoo import write_zoo_run, zoo_env_name

SB3_DEFAULTS = "SB3's defaults"
"""The hyperparameters' entry name when teachers.yaml has none for the env."""


class _Card(TypedDict):
    model: str
    env_id: str
    algo: str
    env_steps: int
    return_mean: float
    return_std: float
    episodes: int
    protocol: str


class TeacherCard(_Card, total=False):
    """card.yaml: the trained teacher's file, how it was measured and what it returned."""

    vecnormalize: str


def finish(
    settings: TrainTeacherSettings,
    hp: ZooHyperparams,
    model: BaseAlgorithm,
    out: Path,
    wall: float,
    resumed_at: list[int],
) -> TeacherCard:
    """rl-zoo layout in `out` (the settings' folder), then the deterministic evaluation of the files as written, then
    the card."""
    from policykd.rollouts import run_episodes, teacher_actor
    from policykd.teachers import load_teacher

    name = zoo_env_name(settings.env_id)
    normalizer = model.get_vec_normalize_env()
    config = {**hp.raw, "n_timesteps": settings.steps, "n_envs": settings.n_envs}
    args: dict[str, object] = {
        "n_timesteps": settings.steps,
        "seed": settings.seed,
        "conf_file": "policykd/resources/envs/teachers.yaml",
        "tensorboard_log": str(out / "tb"),
        "device": settings.device,
    }
    options = EnvOptions.of(settings)
    if options.kwargs:
        args["env_kwargs"] = dict(options.kwargs)  # where rl-zoo's enjoy reads them
    run = write_zoo_run(
        out, model, algo=settings.algo, env_id=settings.env_id, config=config, args=args, normalizer=normalizer
    )

    start = time.time()
    teacher = load_teacher(str(run), env_id=settings.env_id, options=options)
    returns = run_episodes(teacher_actor(teacher), teacher.factory, settings.eval_episodes, EVAL_SEED_OFFSET)
    eval_s = time.time() - start
    protocol = (
        f"deterministic actions (bitwise SB3's predict: evaluate_policy gives the same); "
        f"{settings.eval_episodes} episodes, episode i reset with seed {EVAL_SEED_OFFSET}+i (as `policykd evaluate`); "
        "raw Monitor returns"
        + ("; observations through the frozen VecNormalize statistics" if normalizer is not None else "")
    )
    card: TeacherCard = {
        "model": str((run / f"{name}.zip").relative_to(out)),
        "env_id": settings.env_id,
        "algo": settings.algo,
        "env_steps": int(model.num_timesteps),
        "return_mean": round(returns.mean, 4),
        "return_std": round(returns.std, 4),
        "episodes": settings.eval_episodes,
        "protocol": protocol,
    }
    if normalizer is not None:
        card["vecnormalize"] = str((run / name / "vecnormalize.pkl").relative_to(out))
    atomic_write_text(
        out / "CARD.md", _card_markdown(settings, hp, card, out, wall, eval_s, returns.returns.tolist(), resumed_at)
    )
    atomic_write_text(out / "card.yaml", yaml.safe_dump(card, sort_keys=False))  # last: marks the run finished
    return card


def _card_markdown(
    settings: TrainTeacherSettings,
    hp: ZooHyperparams,
    card: TeacherCard,
    out: Path,
    wall: float,
    eval_s: float,
    returns: list[float],
    resumed_at: list[int],
) -> str:
    hyper = yaml.safe_dump(hp.raw, sort_keys=False).strip()
    resumed = ", ".join(str(s) for s in resumed_at) if resumed_at else "never (one uninterrupted run)"
    rows = [
        (
            "file",
            f"`{card['model']}`: SB3 {settings.algo.upper()} zip (`{settings.algo.upper()}.load` works, `.learn()` continues)",
        ),
        ("algorithm", f"{settings.algo.upper()}, `{hp.policy}`"),
        ("environment", f"`{settings.env_id}` ({settings.n_envs} envs, seed {settings.seed})"),
        (
            "normalisation",
            f"VecNormalize {hp.normalize}: `{card['vecnormalize']}`" if "vecnormalize" in card else "none",
        ),
        (
            "hyperparameters",
            f"{SB3_DEFAULTS} (no entry for the env in `envs/teachers.yaml`)"
            if hp.key == SB3_DEFAULTS
            else f"rl-baselines3-zoo, entry `{settings.algo}: {hp.key}` of `envs/teachers.yaml` (below)",
        ),
        ("env steps", f"{card['env_steps']:,}"),
        (
            "wall-clock",
            f"{wall:.0f} s training (all sessions, checkpoints included) + {eval_s:.0f} s evaluation; "
            f"torch threads 1, device {settings.device} (this session)",
        ),
        ("resumed at step", resumed),
        (
            "measured return",
            f"**{card['return_mean']:.2f} ± {card['return_std']:.2f}** (mean ± std) over "
            f"{card['episodes']} episodes: {', '.join(f'{r:.1f}' for r in returns)}",
        ),
        (
            "how measured",
            card["protocol"] + f"; `policykd evaluate --env {settings.env_id} --model {settings.out}` repeats it",
        ),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    command = (
        f"policykd train-teacher --env {settings.env_id} --algo {settings.algo} --steps {settings.steps} "
        f"--seed {settings.seed} --n-envs {settings.n_envs} --out {settings.out}"
        + "".join(f" --env-kwargs {spec}" for spec in settings.env_kwargs)
        + "".join(f" --env-wrapper {spec}" for spec in settings.env_wrappers)
    )
    return (
        f"# {settings.algo}-{zoo_env_name(settings.env_id)}: {settings.algo.upper()} teacher for "
        f"{settings.env_id}\n\nTrained with `{command}`.\n\n| field | value |\n|---|---|\n{table}\n\n"
        f"## Hyperparameters\n\n```yaml\n{hyper}\n```\n\nTensorBoard: `tensorboard --logdir {out / 'tb'}`.\n"
    )
