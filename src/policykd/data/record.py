"""`policykd record`: play episodes (a teacher, or a person) and store them as a Minari dataset.

Episodes are recorded one at a time, episode i reset with seed `seed + i`, through the
same wrapper stack distillation uses (`EnvFactory`). Each finished episode is written at
once to `<root>/.policykd-partial/<dataset>/episode_<i>.npz` (atomically and durably,
`policykd.storage`), so a killed recording resumes at the first missing episode and, with a
deterministic teacher, ends with the dataset an uninterrupted run would have written.
The Minari dataset itself is written only when every episode is in.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch as th
from gymnasium import spaces
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from stable_baselines3.common.vec_env import VecEnv

from policykd.constants import DIST_FIELDS
from policykd.data.dataset_writer import Episode, episode_score_and_steps, frames_of, write_dataset
from policykd.data.datasets import META_FILE, DatasetMeta, dataset_root, folder_bytes, stored_observation_space
from policykd.distributions import ActionDist, check_finite, env_action
from policykd.envs import EnvFactory, array_obs, is_atari
from policykd.errors import PolicykdError, option
from policykd.fields import spelled
from policykd.storage import atomic_write_text, disk_full_is_one_line, settings_differ
from policykd.teachers import Teacher

# obs (1, ...) -> (action (1, ...), teacher distribution or None, teacher value or None)
PolicyFn = Callable[[np.ndarray], tuple[np.ndarray, ActionDist | None, th.Tensor | None]]


@dataclass(frozen=True)
class Recording:
    """One recording, as it must match for a re-run to resume it (the command's settings are `policykd.settings.RecordSettings`)."""

    env_id: str
    dataset: str
    episodes: int
    seed: int
    source: str
    teacher: str | None


def teacher_policy(teacher: Teacher, *, actions_only: bool = False) -> PolicyFn:
    """The teacher acts greedily (as in evaluation) and labels every state with its distribution
    (`actions_only`: keeps only its actions, like the logs of an expert nobody can run any more)."""

    def act(obs: np.ndarray) -> tuple[np.ndarray, ActionDist | None, th.Tensor | None]:
        dist, value = teacher.label(obs)
        check_finite(dist, value, "the teacher's output while recording")
        action = env_action(dist, teacher.action_space)
        return (action, None, None) if actions_only else (action, dist, value)

    return act


def check_dataset_id(dataset_id: str) -> None:
    """Minari's id rules, checked before anyone plays: a refused name after the last episode loses the play."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        if parse_dataset_id(dataset_id)[-1] is None:
            raise ValueError("it has no version: end it with -v0")
    except (ValueError, TypeError) as err:
        raise PolicykdError(
            f"{spelled('dataset')} {dataset_id!r} is not a valid Minari dataset id ({err}); "
            "use [namespace/]name-v<version>, e.g. pong/teacher-v0"
        ) from None


def partial_folder(dataset_id: str) -> Path:
    return dataset_root() / ".policykd-partial" / dataset_id


def _labels_of(dist: ActionDist | None) -> dict[str, np.ndarray]:
    if dist is None:
        return {}
    return {
        k: getattr(dist, k)[0].cpu().numpy().astype(np.float32) for k in DIST_FIELDS if getattr(dist, k) is not None
    }


def record_episode(venv: VecEnv, policy: PolicyFn, seed: int, frame_stack: int) -> tuple[Episode, ActionDist | None]:
    """One episode on a single-env VecEnv, reset with `seed`; every observation labelled, the last one too."""
    venv.seed(seed)
    obs = array_obs(venv.reset())
    frames, actions, rewards, terms, truncs, labels, values = [], [], [], [], [], [], []
    template = None
    while True:
        action, dist, value = policy(obs)
        template = dist if dist is not None else template
        frames.append(frames_of(obs, frame_stack)[0])
        labels.append(_labels_of(dist))
        values.append(None if value is None else float(value[0]))
        next_obs, reward, done, infos = venv.step(action)
        obs = array_obs(next_obs)
        actions.append(np.asarray(action)[0])
        rewards.append(float(reward[0]))
        if done[0]:
            info = infos[0]
            truncated = bool(info.get("TimeLimit.truncated", False))
            terms.append(not truncated)
            truncs.append(truncated)
            final = info["terminal_observation"][None]
            _, dist, value = policy(final)
            frames.append(frames_of(final, frame_stack)[0])
            labels.append(_labels_of(dist))
            values.append(None if value is None else float(value[0]))
            score = float(info["episode"]["r"]) if "episode" in info else float(np.sum(rewards))
            break
        terms.append(False)
        truncs.append(False)
    stacked = {k: np.stack([step[k] for step in labels]) for k in labels[0]} if labels[0] else {}
    value_array = None if values[0] is None else np.asarray(values, dtype=np.float32)
    episode = Episode(
        np.stack(frames),
        np.stack(actions),
        np.asarray(rewards, dtype=np.float32),
        np.asarray(terms),
        np.asarray(truncs),
        stacked,
        value_array,
        seed,
        score,
    )
    return episode, template


def _check_settings(folder: Path, settings: Recording) -> None:
    """The first run leaves its settings in `record.json`; a re-run resumes only with the same ones."""
    path = folder / "record.json"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(settings)), fsync=True)
        return
    differ = settings_differ(json.loads(path.read_text()), asdict(settings))
    if differ:
        raise PolicykdError(
            f"an unfinished recording of {settings.dataset} with other settings ({', '.join(differ)}) "
            f"is in {folder}; re-run it unchanged to resume, or pass {option('overwrite')}"
        )


def record(
    factory: EnvFactory,
    policy: PolicyFn,
    settings: Recording,
    *,
    teacher: Teacher | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    quiet: bool = False,
    env_kwargs: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Record `settings.episodes` episodes into the Minari dataset `settings.dataset`; returns a summary.
    `env_kwargs`: the command's `--env-kwargs`, stored in the dataset's env spec so Minari remakes the same env."""
    console = console or Console()
    folder = _prepare(settings, overwrite)
    frame_stack = factory.frame_stack if is_atari(factory.env_id) else 0
    template, spaces_ = _play(factory, policy, settings, folder, frame_stack, console, quiet)
    if (
        template is None and teacher is not None and settings.source == "teacher"
    ):  # all from an earlier, interrupted run
        template = teacher.label(factory_reset_obs(factory, settings.seed))[0]
    summary = _write(settings, folder, frame_stack, template, teacher, spaces_, env_kwargs or {})
    if not quiet:
        console.print(
            f"dataset {settings.dataset}: {summary['episodes']} episodes, {summary['steps']:,} steps, "
            f"return {summary['return_mean']:+.2f} ± {summary['return_std']:.2f}, "
            f"{summary['bytes_per_step']:,.0f} bytes/step on disk → {summary['path']}"
        )
    return summary


def _prepare(settings: Recording, overwrite: bool) -> Path:
    """The folder of finished episodes, after refusing what would lose a dataset or mix two recordings."""
    check_dataset_id(settings.dataset)
    target = dataset_root() / settings.dataset
    folder = partial_folder(settings.dataset)
    if target.exists() and not overwrite:
        if (target / META_FILE).exists() or not folder.exists():
            raise PolicykdError(
                f"dataset {settings.dataset} already exists at {target}; pass {option('overwrite')} to replace it"
            )
        shutil.rmtree(target)  # our own write of it was cut short (full disk, kill): the episodes are all kept
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    _check_settings(folder, settings)
    return folder


def _play(
    factory: EnvFactory,
    policy: PolicyFn,
    settings: Recording,
    folder: Path,
    frame_stack: int,
    console: Console,
    quiet: bool,
) -> tuple[ActionDist | None, tuple[spaces.Space, spaces.Space]]:
    """Every missing episode, each written as it ends; returns a label template and the env's spaces."""
    venv = factory.make(1, settings.seed)
    spaces_ = (venv.observation_space, venv.action_space)
    template = None
    done = sorted(folder.glob("episode_*.npz"))
    try:
        with Progress(
            TextColumn("[bold]record"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("episodes"),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        ) as bar:
            task = bar.add_task("record", total=settings.episodes, completed=len(done), last="")
            for i in range(settings.episodes):
                path = folder / f"episode_{i:06d}.npz"
                if path.is_file():
                    continue
                episode, dist = record_episode(venv, policy, settings.seed + i, frame_stack)
                template = dist if dist is not None else template
                with disk_full_is_one_line(folder, "an episode"):
                    episode.save(path)
                bar.update(task, advance=1, last=f"return {episode.score:+.1f}, {len(episode.rewards)} steps")
    finally:
        venv.close()
    return template, spaces_


def _write(
    settings: Recording,
    folder: Path,
    frame_stack: int,
    template: ActionDist | None,
    teacher: Teacher | None,
    spaces_: tuple[spaces.Space, spaces.Space],
    env_kwargs: Mapping[str, object],
) -> dict[str, object]:
    """The Minari dataset from the episode files (streamed, one in memory at a time); then they are removed."""
    paths = sorted(folder.glob("episode_*.npz"))
    scores, lengths = zip(*(episode_score_and_steps(p) for p in paths))
    meta = DatasetMeta(
        env_id=settings.env_id,
        frame_stack=frame_stack,
        label_kind=template.kind if template is not None else None,
        squashed=bool(template.squashed) if template is not None else False,
        q_values=bool(template.q_values) if template is not None else False,
        source=settings.source,
        teacher=settings.teacher,
        teacher_algo=teacher.algo if teacher else None,
        teacher_params=int(teacher.acting_params) if teacher else None,
        episode_returns=list(scores),
    )
    normalizer = teacher.normalizer if teacher is not None else None
    with disk_full_is_one_line(dataset_root(), f"dataset {settings.dataset}"):
        out = write_dataset(
            settings.dataset,
            (Episode.load(p) for p in paths),
            meta,
            observation_space=stored_observation_space(spaces_[0], frame_stack),
            action_space=spaces_[1],
            normalizer=normalizer,
            overwrite=True,
            env_kwargs=env_kwargs,
        )
    shutil.rmtree(folder, ignore_errors=True)
    steps = int(sum(lengths))
    size = folder_bytes(out)
    returns = np.array(meta.episode_returns)
    return {
        "dataset": settings.dataset,
        "path": str(out),
        "env_id": settings.env_id,
        "episodes": len(paths),
        "steps": steps,
        "bytes_on_disk": size,
        "bytes_per_step": size / max(steps, 1),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "distributions": meta.label_kind is not None,
    }


def factory_reset_obs(factory: EnvFactory, seed: int) -> np.ndarray:
    venv = factory.make(1, seed)
    try:
        return array_obs(venv.reset())
    finally:
        venv.close()
