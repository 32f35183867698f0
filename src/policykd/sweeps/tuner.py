"""Ray and Tune: where the sweep's trials are placed, retried, stopped early and resumed. Nothing of our own.

Imported only once `policykd.sweeps.run` has checked that Ray is installed.

`connect` starts Ray on this machine or joins a cluster; `run_batch` runs a list of trial
configs as one Tune experiment (a grid search over the configs) under `<out>/tune/<name>`, or
restores that experiment if an earlier invocation started it, so finished trials are not run
again. Retries are Tune's `FailureConfig`; early stopping is a Tune `Stopper`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import ray
from ray import tune
from ray.tune import Result
from ray.tune.experiment import Trial

from policykd.errors import PolicykdError, option
from policykd.sweeps.trial import Distill, TrialConfig, TrialMetrics, run_trial_space, starts


@dataclass(frozen=True)
class TrialRecord:
    """What Tune knows of one trial at the end: its config, last report, and how it ended."""

    config: TrialConfig
    metrics: TrialMetrics
    status: str  # finished | stopped early | failed
    starts: int
    """Times the trial's distillation started: 2 or more after a retry (a dead worker) or a resumed sweep."""


def check_address(address: str | None, timeout: float = 10.0) -> None:
    """A host:port that does not answer is one line now, not a long hang inside `ray.init`."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PolicykdError(f"{option('address', address)}: write host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise PolicykdError(
            f"{option('address', address)}: no Ray cluster answers there ({err.strerror or err})"
        ) from None


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start Ray here with every core and a small object store (trials pass
    nothing through it: each writes its own run folder)."""
    if address is None:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            object_store_memory=256 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    else:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as err:
            raise PolicykdError(f"{option('address', address)}: {err}") from None


def run_batch(
    configs: list[TrialConfig],
    distill: Distill,
    *,
    name: str,
    out: Path,
    cpus: float,
    max_failures: int,
    stopper: Hopeless | None = None,
    progress: Progress | None = None,
) -> list[TrialRecord]:
    """The configs as one Tune experiment at `<out>/tune/<name>` (restored if it exists); a record per config.
    `distill` reaches each trial's worker through Tune (`with_parameters`)."""
    global _PROGRESS
    _PROGRESS = progress
    trainable = tune.with_resources(tune.with_parameters(run_trial_space, distill=distill), {"cpu": cpus})
    path = out.resolve() / "tune" / name
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(trial_dirname_creator=_dirname, trial_name_creator=_dirname),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(path.parent),
                verbose=0,
                stop=stopper,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[_Forward()],
            ),
        )
    with _silent_tune():
        grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    if any(_interrupted(result, stopper) for result in results):  # Ctrl-C: Tune saved the experiment and returned
        raise KeyboardInterrupt
    order = {c["out"]: i for i, c in enumerate(configs)}
    return sorted((_record(result) for result in results), key=lambda r: order.get(r.config["out"], len(order)))


@contextmanager
def _silent_tune() -> Iterator[None]:
    """Tune's newer output engine prints an experiment box and result paths even at verbose=0; with
    RAY_AIR_NEW_OUTPUT=0 it uses its older one, which prints nothing at verbose=0 (ray/tune/tune.py, Ray 2.60).
    The sweep shows its own progress bar and table."""
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["RAY_AIR_NEW_OUTPUT"]
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def _interrupted(result: Result, stopper: Hopeless | None) -> bool:
    """A trial that never started, or ended without its final report, an error or the stopper's verdict."""
    if result.config is None or result.error is not None:
        return result.config is None
    metrics = result.metrics or {}
    if metrics.get("final"):
        return False
    return stopper is None or not metrics or not stopper("", metrics)


def _dirname(trial: Trial) -> str:
    return Path(trial.config["trial"]["out"]).name


def _record(result: Result) -> TrialRecord:
    """How a trial ended: a trial that never started has no config, and ended the batch as an interrupt before."""
    config = (result.config or {})["trial"]
    metrics = cast(TrialMetrics, dict(result.metrics or {}))  # the trial's report, with Tune's own keys
    if result.error is not None:
        status = "failed"
        metrics["error"] = str(result.error).strip().splitlines()[-1][:200]
    else:
        status = "finished" if metrics.get("final") else "stopped early"
    return TrialRecord(config, metrics, status, starts(Path(config["out"])))


class Progress(Protocol):
    """What the sweep shows while its trials run (`policykd.sweeps.run`'s progress bar)."""

    def result(self, trial: str, metrics: TrialMetrics) -> None: ...

    def done(self) -> None: ...


_PROGRESS: Progress | None = None
"""Tune pickles an experiment's callbacks with it and a restored experiment uses those, so the callback below holds
nothing and forwards to the progress bar of the batch this process is running now."""


class _Forward(tune.Callback):
    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: object
    ) -> None:
        if _PROGRESS is not None:
            _PROGRESS.result(Path(trial.config["trial"]["out"]).name, cast(TrialMetrics, result))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: object) -> None:
        if _PROGRESS is not None:
            _PROGRESS.done()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: object) -> None:
        self.on_trial_complete(iteration, trials, trial)


class Hopeless(tune.Stopper):
    """--target: a trial whose return ratio is 3 x margin below the target after half its env steps is stopped.
    Not ASHA: ASHA ranks trials against each other and would cut the smallest students, the very ones whose
    question is whether they pass; here a trial is hopeless only against the target."""

    def __init__(self, target: float, margin: float) -> None:
        self.floor = target - 3 * margin

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return (
            not result.get("final", True)
            and result.get("fraction_done", 0.0) >= 0.5
            and result["return_ratio"] < self.floor
        )

    def stop_all(self) -> bool:
        return False
