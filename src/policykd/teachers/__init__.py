"""Loading teachers from any spec: an SB3 zip, an rl-zoo folder, `zoo:<algo>/<ENV>`,
a shipped agent's name, or several of these as an ensemble."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from policykd.envs import EnvOptions, check_env_id, env_factory, newest_version
from policykd.errors import PolicykdError
from policykd.fields import spelled
from policykd.registry import TEACHER_FORMATS
from policykd.sb3_models import ALGOS, check_spaces, detect_algo, read_zip_data
from policykd.teachers.base import SB3Teacher, Teacher
from policykd.teachers.ensemble import EnsembleTeacher
from policykd.teachers.formats import Format, Resolved
from policykd.teachers.safe_load import load_sb3_safely
from policykd.teachers.zoo import load_vecnormalize
from policykd.views import view_for, with_view

__all__ = ["Teacher", "SB3Teacher", "EnsembleTeacher", "load_teacher", "load_teachers"]


def _resolve(spec: str, zoo_folder: str | Path | None) -> Resolved:
    """The first registered teacher format that claims `spec` finds its files."""
    for entry in TEACHER_FORMATS.values():
        form: Format = entry.load()
        if form.claims(spec):
            return form.resolve(spec, zoo_folder)
    raise PolicykdError(f"teacher not found: {spec}")


def load_teacher(
    spec: str | Path,
    *,
    env_id: str | None = None,
    zoo_folder: str | Path | None = None,
    trust: bool = False,
    view: Sequence[str] = (),
    options: EnvOptions | None = None,
) -> SB3Teacher:
    """Load one teacher, checked against `env_id` (default: the newest version of its own env).

    The algorithm is read from the zip. Spaces come from the live env, so agents saved
    with the legacy `gym` package load on gymnasium; a mismatch names both spaces.
    By default nothing in the zip is unpickled (`load_sb3_safely`); `trust=True` uses
    SB3's full `load`, which runs the zip's pickles: only for zips you trust. `view`: the zip is a student that
    acts on this view of the env (`--student-obs` specs, as its run's summary.json names them). `options`: the
    command's `--env-kwargs` and `--env-wrapper`, on top of the teacher's own config.
    """
    spec = str(spec)
    found = _resolve(spec, zoo_folder)
    zip_path, trained_env, config, vecnorm_path = found.zip_path, found.env_id, found.config, found.vecnormalize
    data = read_zip_data(zip_path)
    algo = detect_algo(data)
    if env_id is None:
        if trained_env is None:
            raise PolicykdError(
                f"teacher {spec} does not say which env it was trained on: pass {spelled('env_id', '--env')}"
            )
        env_id = newest_version(trained_env)
    check_env_id(env_id, options)
    factory = env_factory(
        env_id,
        env_wrapper=config.get("env_wrapper"),
        env_kwargs=config.get("env_kwargs"),
        frame_stack=int(config.get("frame_stack", 4)),
        options=options,
    )
    if view:
        factory = with_view(factory, view_for(factory, view))
    obs_space, action_space = factory.spaces()
    check_spaces(data, obs_space, action_space, f"teacher {spec}", env_id)
    if not trust:
        try:
            model = load_sb3_safely(zip_path, algo, obs_space, action_space, data)
        except PolicykdError:
            raise  # already one clear line
        except Exception as err:  # torch/SB3 errors the safe loader did not foresee
            raise PolicykdError(f"cannot load teacher {spec} as {algo.upper()}: {type(err).__name__}: {err}") from None
    else:
        model = _load_trusted(spec, zip_path, algo, obs_space, action_space)
    model.policy.set_training_mode(False)
    normalizer = None
    if vecnorm_path is not None:
        normalizer = load_vecnormalize(vecnorm_path, factory.make(1, 0))
    return SB3Teacher(spec, algo, model, factory, normalizer, trained_env, config)


def _load_trusted(spec: str, zip_path: Path, algo: str, obs_space, action_space):
    """SB3's full `load`: unpickles everything in the zip (it can run code)."""
    custom = {
        "observation_space": obs_space,
        "action_space": action_space,
        "lr_schedule": lambda _: 0.0,
        "learning_rate": 0.0,
        "clip_range": lambda _: 0.0,
        "exploration_schedule": lambda _: 0.0,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ALGOS[algo].load(zip_path, device="cpu", custom_objects=custom)
    except Exception as err:  # SB3 raises many types for broken zips
        raise PolicykdError(f"cannot load teacher {spec} as {algo.upper()}: {type(err).__name__}: {err}") from None
    return model


def load_teachers(
    specs: Sequence[str | Path],
    *,
    env_id: str | None = None,
    weights: Sequence[float] | None = None,
    zoo_folder: str | Path | None = None,
    trust: bool = False,
    options: EnvOptions | None = None,
) -> Teacher:
    """One teacher, or an ensemble when several specs are given (all on the same env, with the same `options`)."""
    if not specs:
        raise PolicykdError(
            f"no teacher given: pass {spelled('teachers', '--teacher')} (or use an env with a shipped teacher)"
        )
    first = load_teacher(specs[0], env_id=env_id, zoo_folder=zoo_folder, trust=trust, options=options)
    if len(specs) == 1:
        if weights and len(weights) != 1:
            raise PolicykdError(f"{len(weights)} teacher weights for 1 teacher")
        return first
    rest = [
        load_teacher(s, env_id=first.factory.env_id, zoo_folder=zoo_folder, trust=trust, options=options)
        for s in specs[1:]
    ]
    return EnsembleTeacher([first, *rest], list(weights or []))
