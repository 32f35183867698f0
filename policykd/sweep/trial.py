"""One sweep trial: one `distill_with` call in a Ray worker, into its own run folder, reporting each evaluation.

A trial is the library call and nothing more, so a trial folder is an ordinary run folder
(student.zip, summary.json, tb/, curves.png) and everything policykd does for one run holds for
each trial: a retried trial (its worker died) resumes its run from the last checkpoint, and a
trial whose run already finished reports that run's summary instead of distilling again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from policykd.errors import PolicykdError


def relative_return(student: float, teacher: float) -> float:
    """1 + (student - teacher) / |teacher|: the student/teacher return ratio when the teacher's return is positive,
    and still "1 = as good, above 1 = better" when it is negative (Pendulum's returns are)."""
    return 1.0 + (student - teacher) / max(abs(teacher), 1e-8)


def trial_config(env_id: str, teachers: tuple[str, ...], values: dict[str, Any], seed: int, out: Path,
                 cpus: float) -> dict[str, Any]:
    """What Tune passes to `run_trial`: plain JSON-able values (Tune stores them with the experiment)."""
    return {"env_id": env_id, "teachers": list(teachers), "values": {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in values.items()},
            "seed": seed, "out": str(out), "cpus": cpus}


def trial_settings(config: dict[str, Any]) -> Any:
    """The trial's DistillSettings, resolved as `policykd distill` resolves its flags."""
    from policykd.envs import is_atari
    from policykd.presets import resolve_distill

    values = dict(config["values"])
    if is_atari(config["env_id"]) and "torch_threads" not in values:
        values["torch_threads"] = max(1, int(config["cpus"]))  # the CPUs Ray gave this trial, not the machine's
    return resolve_distill(config["env_id"], teachers=tuple(config["teachers"]) or None, seed=config["seed"],
                           out=config["out"], quiet=True, **values)


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable. Reports return_ratio, student_return, teacher_return, env_steps, fraction_done and
    final after every evaluation of the run (the last report is the finished run's)."""
    from ray import tune

    from policykd.api import distill_with

    settings = trial_settings(config)
    finished = _finished_summary(settings)
    if finished is not None:
        tune.report(_metrics(finished["student_return_mean"], finished["teacher_return_mean"], finished["env_steps"],
                             settings.steps, True))
        return

    def report(evaluation: Any, teacher_return: float, final: bool) -> None:
        tune.report(_metrics(evaluation.student_return_mean, teacher_return, evaluation.env_steps, settings.steps, final))

    marker = starts_file(Path(settings.out))
    marker.parent.mkdir(parents=True, exist_ok=True)
    with open(marker, "a") as f:  # one line per start: a retried or resumed trial shows 2 or more
        f.write(f"{time.time():.0f}\n")
    distill_with(settings, on_evaluation=report)


def starts_file(out: Path) -> Path:
    """Beside the run folder (distill owns the folder): one line per time the trial's distillation started."""
    return out.parent / f".{out.name}.starts"


def starts(out: Path) -> int:
    path = starts_file(out)
    return len(path.read_text().splitlines()) if path.exists() else 0


def _finished_summary(settings: Any) -> dict[str, Any] | None:
    """summary.json of a run that finished in this folder with these settings; another run's is an error."""
    path = Path(settings.out) / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    stored = {k: v for k, v in summary.get("config", {}).items() if k in settings.identity()}
    wanted = json.loads(json.dumps(settings.identity()))
    if stored != wanted:
        differ = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise PolicykdError(f"{settings.out} holds a finished run with other settings ({', '.join(differ)}): "
                            "sweep into a new --out")
    return summary


def _metrics(student: float, teacher: float, env_steps: int, steps: int, final: bool) -> dict[str, Any]:
    return {"return_ratio": relative_return(student, teacher), "student_return": float(student),
            "teacher_return": float(teacher), "env_steps": int(env_steps), "fraction_done": env_steps / max(steps, 1),
            "final": bool(final)}


def run_trial_space(space: dict[str, Any]) -> None:
    """What Tune calls: its param space holds the trial's config under "trial" (a grid search over the configs)."""
    run_trial(space["trial"])
