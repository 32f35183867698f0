"""`policykd train-teacher`: train a teacher with SB3 / sb3-contrib and rl-zoo's tuned hyperparameters.

A thin layer: SB3 trains, saves, loads and keeps the replay buffer and VecNormalize
statistics; this module picks the hyperparameters (`envs/teachers.yaml`), checkpoints so a
kill at any instant loses at most one checkpoint interval, and has the result written in rl-zoo
layout with a model card (`policykd.teachers.card`), so `--teacher <out>` loads it.

Checkpoints: every `--checkpoint-every` env steps (at the start of a rollout, when the model
has been trained on every step it has counted) SB3 writes the model, replay buffer and
VecNormalize statistics into a fresh `checkpoint/ckpt-<n>/`; then `checkpoint/checkpoint.json`
(steps done, settings, wall-clock) is renamed into place (`policykd.storage.CheckpointStore`,
the store distill uses too). It names only complete folders, so a kill between any two writes
leaves the previous checkpoint usable.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypedDict, cast

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from policykd.devices import check_device
from policykd.envs import EnvOptions, check_env_id, env_factory
from policykd.errors import PolicykdError, option
from policykd.fields import spelled
from policykd.sb3_models import ALGOS
from policykd.settings import TrainTeacherSettings
from policykd.storage import (
    CheckpointStore,
    check_out,
    disk_full_is_one_line,
    prepare_out,
    settings_differ,
)
from policykd.teachers.card import SB3_DEFAULTS, TeacherCard, finish
from policykd.teachers.hyperparams import (
    VecNormalizeKwargs,
    ZooHyperparams,
    action_noise,
    check_action_space,
    lookup,
    train_freq_steps,
    translate,
)
from policykd.teachers.zoo import zoo_env_name

CKPT_DIR = "checkpoint"
IDENTITY = ("env_id", "env_kwargs", "env_wrappers", "algo", "steps", "seed", "n_envs", "hyperparameters")


def identity(settings: TrainTeacherSettings, hp: ZooHyperparams) -> dict[str, object]:
    """What must match for a checkpoint to be continued (not how often it is saved or evaluated)."""
    values = {**asdict(settings), "hyperparameters": hp.raw}
    return json.loads(json.dumps({k: values[k] for k in IDENTITY}))


def resolve(settings: TrainTeacherSettings) -> tuple[TrainTeacherSettings, ZooHyperparams]:
    """The settings with rl-zoo's defaults filled in (steps, n_envs, checkpoint interval, out), after every
    check that needs no training, in the order a user would fix them."""
    check_device(settings.device)
    env_id, algo = settings.env_id, settings.algo
    options = EnvOptions.of(settings)
    check_env_id(env_id, options)
    check_action_space(algo, env_id, env_factory(env_id, options=options).spaces()[1])
    hp = _hyperparameters(settings)
    steps = settings.steps or hp.n_timesteps
    n_envs = settings.n_envs or hp.n_envs
    per_env = (
        hp.model_kwargs.get("n_steps", 2048)
        if algo == "ppo"
        else train_freq_steps(hp.model_kwargs.get("train_freq", 1))
    )
    rollout = n_envs * int(per_env)
    out = Path(settings.out or f"runs/teachers/{algo}-{zoo_env_name(env_id)}")
    if out.exists() and not out.is_dir():
        raise PolicykdError(f"output path {out} exists and is not a folder")
    every = settings.checkpoint_every or max(steps // 10, rollout)
    return replace(settings, steps=steps, n_envs=n_envs, checkpoint_every=every, out=str(out)), hp


def _hyperparameters(settings: TrainTeacherSettings) -> ZooHyperparams:
    """rl-zoo's entry for the env; for an env it has none for, such as your own, SB3's defaults once --steps says
    how long (rl-zoo's n_timesteps is what is missing)."""
    try:
        return lookup(settings.algo, settings.env_id)
    except PolicykdError as err:
        if settings.steps is None:
            raise PolicykdError(f"{err}, or pass {spelled('steps')} to train with SB3's defaults") from None
    return translate(SB3_DEFAULTS, {})


def _source(hp: ZooHyperparams) -> str:
    return SB3_DEFAULTS if hp.key == SB3_DEFAULTS else f"rl-zoo entry {hp.key!r}"


@dataclass(frozen=True)
class _Filled:
    """The settings `resolve` fills in, with the types they have once filled."""

    out: Path
    steps: int
    n_envs: int
    checkpoint_every: int


def _filled(settings: TrainTeacherSettings) -> _Filled:
    out, steps, n_envs, every = settings.out, settings.steps, settings.n_envs, settings.checkpoint_every
    if out is None or steps is None or n_envs is None or every is None:
        raise PolicykdError("train_teacher needs the settings `resolve` returns (out, steps, n_envs, checkpoint_every)")
    return _Filled(Path(out), steps, n_envs, every)


# --- checkpoints ------------------------------------------------------------------------------


class Checkpoint(TypedDict, total=False):
    """A checkpoint's pointer as `checkpoint()` below writes it, with its folder as `path`."""

    steps_done: int
    total_steps: int
    wall_s: float
    resumed_at: list[int]
    settings: dict[str, object]
    path: Path


def read_checkpoint(out: Path) -> Checkpoint | None:
    """The pointer of `out`'s checkpoint (steps done, settings, ...) with its folder as `path`, or None."""
    store = CheckpointStore(out / CKPT_DIR)
    meta = store.latest()
    if meta is not None:
        meta["path"] = store.folder(meta)
    return cast("Checkpoint | None", meta)


def write_checkpoint(model: BaseAlgorithm, out: Path, meta: Mapping[str, object]) -> Path:
    """Model, replay buffer, VecNormalize, as SB3 saves them, into a fresh checkpoint folder."""

    def write(folder: Path) -> None:
        model.save(folder / "model.zip")
        if isinstance(model, OffPolicyAlgorithm):
            model.save_replay_buffer(folder / "replay_buffer.pkl")
        normalizer = model.get_vec_normalize_env()
        if normalizer is not None:
            normalizer.save(str(folder / "vecnormalize.pkl"))

    return CheckpointStore(out / CKPT_DIR).save(write, meta)


class AtomicCheckpoint(BaseCallback):
    """Checkpoints at the start of a rollout, when every counted step has been trained on."""

    def __init__(self, every: int, save: Callable[[], Path], start: int) -> None:
        super().__init__()
        self.every, self.save, self.last = every, save, start
        self.rollout_start = start  # steps counted when the current rollout began

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        self.rollout_start = steps
        if steps - self.last >= self.every:
            self.save()
            self.last = steps

    def _on_step(self) -> bool:
        return True


# --- the run ----------------------------------------------------------------------------------


def _algo_gamma(algo: str) -> float:
    return float(inspect.signature(ALGOS[algo].__init__).parameters["gamma"].default)


def _make_env(settings: TrainTeacherSettings, hp: ZooHyperparams, seed: int, vecnormalize: Path | None) -> VecEnv:
    venv = env_factory(settings.env_id, options=EnvOptions.of(settings)).make(_filled(settings).n_envs, seed)
    if hp.normalize is None:
        return venv
    if vecnormalize is not None:
        return VecNormalize.load(str(vecnormalize), venv)  # our own checkpoint: SB3's load
    kwargs: VecNormalizeKwargs = {
        "gamma": float(hp.model_kwargs.get("gamma", _algo_gamma(settings.algo))),
        **hp.normalize,
    }
    return VecNormalize(venv, **kwargs)


def _build_model(settings: TrainTeacherSettings, hp: ZooHyperparams, ckpt: Checkpoint | None) -> BaseAlgorithm:
    cls = ALGOS[settings.algo]
    done = ckpt["steps_done"] if ckpt else 0
    folder = ckpt["path"] if ckpt else None
    vecnorm = folder / "vecnormalize.pkl" if folder and (folder / "vecnormalize.pkl").is_file() else None
    venv = _make_env(settings, hp, settings.seed + done, vecnorm)
    if folder is not None:
        try:
            model = cls.load(folder / "model.zip", env=venv, device=settings.device)
            if isinstance(model, OffPolicyAlgorithm) and (folder / "replay_buffer.pkl").is_file():
                model.load_replay_buffer(folder / "replay_buffer.pkl")
        except Exception as err:  # damaged after it was written (SB3 raises many types)
            raise PolicykdError(
                f"checkpoint {folder} is damaged ({type(err).__name__}); pass {option('overwrite')} to start again"
            ) from None
        model._last_obs = None  # the env is fresh: learn() must reset it
        model.set_random_seed(settings.seed + done)
        return model
    kwargs = action_noise(hp.model_kwargs, venv.action_space)
    try:
        return cls(
            hp.policy,
            venv,
            seed=settings.seed,
            device=settings.device,
            verbose=0,
            tensorboard_log=str(_filled(settings).out / "tb"),
            **kwargs,
        )
    except (TypeError, ValueError, AssertionError) as err:
        venv.close()
        raise PolicykdError(f"envs/teachers.yaml [{settings.algo}][{hp.key}]: {type(err).__name__}: {err}") from None


def _may_change_steps(ckpt: Checkpoint, settings: TrainTeacherSettings, hp: ZooHyperparams) -> bool:
    """An unfinished run may take another --steps, not below its checkpoint (equal: finish it now), when no
    schedule depends on the total (lin_ values do)."""
    schedules = any(isinstance(v, str) and v.startswith("lin_") for v in hp.raw.values())
    return _filled(settings).steps >= int(ckpt["steps_done"]) and not schedules


def _prepare(settings: TrainTeacherSettings, hp: ZooHyperparams) -> tuple[Checkpoint | None, bool]:
    """(checkpoint to continue or None, whether `out` may be emptied); refuses what would mix or lose runs."""
    out = _filled(settings).out
    if (out / "card.yaml").is_file() and not settings.overwrite:
        raise PolicykdError(
            f"{out} already holds a finished teacher (card.yaml); pass {option('overwrite')} to train again"
        )
    ckpt = None if settings.overwrite else read_checkpoint(out)
    if ckpt is None:
        # a run killed before its first checkpoint left only its own traces: start it again
        ours = out.is_dir() and {p.name for p in out.iterdir()} <= {"tb", CKPT_DIR}
        check_out(out, settings.overwrite or ours)
        return None, settings.overwrite or ours
    saved, current = ckpt.get("settings", {}), identity(settings, hp)
    keys = settings_differ(
        saved,
        current,
        ignore=("steps",) if _may_change_steps(ckpt, settings, hp) else (),
        defaults={"env_kwargs": (), "env_wrappers": ()},  # a checkpoint from before they existed made the plain env
    )
    ordered = [k for k in IDENTITY if k in keys] + [k for k in keys if k not in IDENTITY]
    differ = [k if k == "hyperparameters" else f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in ordered]
    if differ:
        raise PolicykdError(
            f"{out} holds an unfinished run with other settings ({'; '.join(differ)}); "
            f"re-run it unchanged to resume, or pass {option('overwrite')} / another {spelled('out')}"
        )
    if not (ckpt["path"] / "model.zip").is_file():
        raise PolicykdError(f"checkpoint {ckpt['path']} has no model.zip; pass {option('overwrite')} to start again")
    return ckpt, False


def train_teacher(
    settings: TrainTeacherSettings, hp: ZooHyperparams, log: Callable[[str], None] = print
) -> TeacherCard:
    """Train (or continue) the teacher, evaluate it, write zoo layout + card; returns the card fields."""
    th.set_num_threads(1)  # small MLPs: thread hand-offs cost more than they give on 2 cores
    filled = _filled(settings)
    ckpt, clear = _prepare(settings, hp)
    model = _build_model(settings, hp, ckpt)
    if ckpt is None:
        prepare_out(filled.out, clear)  # only now is an old run replaced
    done = int(model.num_timesteps)
    wall_before = float(ckpt["wall_s"]) if ckpt else 0.0
    resumed_at = list(ckpt.get("resumed_at", [])) + [done] if ckpt else []
    if ckpt:
        was = ckpt.get("settings", {}).get("steps", settings.steps)
        log(
            f"resuming from checkpoint at step {done} of {settings.steps}{f' (was {was})' if was != settings.steps else ''} "
            f"({ckpt['path']})"
        )
    else:
        log(
            f"training {settings.algo} on {settings.env_id} for {settings.steps} steps "
            f"({settings.n_envs} envs, {_source(hp)}); checkpoints every {settings.checkpoint_every}"
        )
    session_start = time.time()

    def checkpoint() -> Path:
        meta = {
            "steps_done": int(model.num_timesteps),
            "total_steps": settings.steps,
            "wall_s": wall_before + time.time() - session_start,
            "resumed_at": resumed_at,
            "settings": identity(settings, hp),
        }
        folder = write_checkpoint(model, filled.out, meta)
        rate = (model.num_timesteps - done) / max(time.time() - session_start, 1e-9)
        episodes = [e["r"] for e in model.ep_info_buffer or []]
        recent = f", recent episode return {sum(episodes) / len(episodes):.1f}" if episodes else ""
        log(f"step {model.num_timesteps}/{settings.steps} ({rate:.0f} steps/s{recent}): checkpoint {folder}")
        return folder

    callback = AtomicCheckpoint(filled.checkpoint_every, checkpoint, done)
    try:
        with disk_full_is_one_line(filled.out, "a checkpoint"):
            model.learn(filled.steps - done, callback=callback, reset_num_timesteps=ckpt is None)
    except KeyboardInterrupt:
        if not isinstance(model, OffPolicyAlgorithm):  # a partial rollout is never trained on: redo it
            model.num_timesteps = callback.rollout_start
        folder = checkpoint()
        log(
            f"interrupted at step {model.num_timesteps} of {settings.steps}: checkpoint in {folder}; "
            "run the same command again to resume"
        )
        raise
    wall = wall_before + time.time() - session_start
    with disk_full_is_one_line(filled.out, "the teacher and its card"):
        card = finish(settings, hp, model, filled.out, wall, resumed_at)
    venv = model.get_env()
    if venv is not None:  # always: the model was built or loaded with its env
        venv.close()
    store = CheckpointStore(filled.out / CKPT_DIR)
    store.clear()
    with suppress(OSError):  # the folder holds nothing else
        store.root.rmdir()
    log(
        f"{settings.algo} {settings.env_id}: {card['return_mean']:.2f} ± {card['return_std']:.2f} over "
        f"{card['episodes']} episodes after {card['env_steps']} steps ({wall:.0f} s); card: {filled.out / 'CARD.md'}"
    )
    return card
