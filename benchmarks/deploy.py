"""Deploy: actions per second at batch 1 on one core, file size and return of each way to act, per env.

Run by hand (a distil of the default student first if the run folder has none: a minute for
CartPole and MuJoCo, 11-20 minutes for Pong):

    python benchmarks/deploy.py                                  # CartPole-v1 and HalfCheetah-v5
    python benchmarks/deploy.py --env HalfCheetah-v5 --run runs/HalfCheetah-v5
    python benchmarks/deploy.py --env Walker2d-v5 --run runs/bench-prune/Walker2d-v5/distilled \
        --pruned runs/bench-prune/Walker2d-v5/pruned           # adds the pruned student's rows
    python benchmarks/deploy.py --env ALE/Pong-v5                # CNN: no C rows

Rows: teacher SB3 `predict`, teacher bare torch actor (`policy._predict` under no_grad), student
SB3 `predict`, student ONNX fp32 and int8 (onnxruntime, one thread), student C fp32 and int8 (a
generated C driver loop compiled with -O2, timed inside C, not through Python; MLP students only),
and the same for a pruned student with `--pruned`. The process is pinned to core 0
(`sched_setaffinity`, the C driver under `taskset -c 0` where it exists), torch and onnxruntime
run one thread. Every row acts on the same real rollout observations, one at a time. Reference
measured in the same run: plain env steps/s (random actions, no policy).

Returns are over the summary's seeds and episode count: the SB3 rows are the summary's (the
teacher's bare actor is the same function as its predict), the exported files are evaluated here
with `policykd.evaluate`. Sizes: the zip for SB3 rows (actor, critic and optimiser state), the
.onnx file, and for C the object file `cc -O2 -c` makes (the weights' bytes in brackets). For
continuous actions a noise floor follows the table: the student's own `predict` with its actions
moved by at most 1e-6, on the same seeds, shows how far float-level differences alone move the
returns of a chaotic env (an exported file's float sums differ from torch's at that level).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECONDS = 2.0  # per timed row; each row repeats the observation set until this much time has passed
DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "HEADER"

int main(int argc, char **argv) {
    long n = atol(argv[2]), count = 0, k;
    float *obs = malloc(sizeof(float) * POLICYKD_OBS_DIM * n), action[POLICYKD_ACT_DIM];
    double checksum = 0.0, elapsed = 0.0;
    struct timespec t0, t1;
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(obs, sizeof(float) * POLICYKD_OBS_DIM, n, f) != (size_t)n) return 1;
    fclose(f);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (elapsed < atof(argv[3])) {
        for (k = 0; k < n; ++k) { policykd_act(obs + k * POLICYKD_OBS_DIM, action); checksum += action[0]; }
        count += n;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    }
    printf("%.1f %g\n", count / elapsed, checksum);
    return 0;
}
"""


def rate(act, observations: np.ndarray, seconds: float = SECONDS) -> float:
    """Actions per second of `act(one observation batch of 1)` over the observation set, repeated."""
    for row in observations[:50]:
        act(row[None])  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for row in observations:
            act(row[None])
        count += len(observations)
    return count / (time.perf_counter() - start)


def env_steps_per_second(env_id: str, seconds: float = SECONDS) -> float:
    import gymnasium as gym

    from policykd.envs import check_env_id

    env = gym.make(check_env_id(env_id))  # registers ALE's envs
    env.reset(seed=0)
    env.action_space.seed(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        count += 100
    env.close()
    return count / (time.perf_counter() - start)


def ensure_run(env_id: str, run: Path | None, root: Path) -> Path:
    run = run or root / env_id.replace("/", "-")
    if not (run / "student.zip").is_file():
        command = ["policykd", "distill", "--env", env_id, "--out", str(run)]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    return run


def sb3_actors(spec: str, env_id: str, summary_path: Path | None = None):
    """(SB3 predict, bare torch actor) of a teacher spec or a student.zip, VecNormalize applied in both."""
    import torch as th

    from policykd.teachers import load_teacher

    loaded = load_teacher(spec, env_id=env_id)
    model, norm = loaded.model, loaded.normalizer
    prepare = (lambda obs: norm.normalize_obs(obs)) if norm is not None else (lambda obs: obs)

    def predict(obs):
        return model.predict(prepare(obs), deterministic=True)[0]

    def bare(obs):
        with th.no_grad():
            return model.policy._predict(th.as_tensor(prepare(obs), dtype=th.float32), deterministic=True)

    return predict, bare


def observations(env_id: str, predict, steps: int = 250, n_envs: int = 4) -> np.ndarray:
    """1,000 raw observations from the student's own rollout: what every row acts on."""
    from policykd.envs import EnvFactory

    venv, seen = EnvFactory(env_id).make(n_envs, 0), []
    obs = venv.reset()
    for _ in range(steps):
        seen.append(obs)
        obs, *_ = venv.step(predict(obs))
    venv.close()
    return np.concatenate(seen)


def onnx_actor(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = {"tensor(double)": np.float64, "tensor(uint8)": np.uint8}.get(session.get_inputs()[0].type, np.float32)
    return lambda obs: session.run(["action"], {name: obs.astype(dtype, copy=False)})


def c_rate(source: Path, obs: np.ndarray, work: Path, seconds: float = SECONDS) -> tuple[float, int, int]:
    """(actions/s timed inside a C loop, object file bytes, weight bytes) of an exported policy .c."""
    header = source.with_suffix(".h").name
    driver = work / f"driver_{source.stem}.c"
    driver.write_text(DRIVER.replace("HEADER", header))
    binary, obj = work / f"driver_{source.stem}", work / f"{source.stem}.o"
    flags = ["-std=c99", "-O2", "-Wall", "-Werror", f"-I{source.parent}"]
    subprocess.run(["cc", *flags, "-c", "-o", str(obj), str(source)], check=True)
    subprocess.run(["cc", *flags, "-o", str(binary), str(driver), str(source), "-lm"], check=True)
    data = work / "obs.f32"
    np.ascontiguousarray(obs, dtype=np.float32).tofile(data)
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    done = subprocess.run(
        [*pin, str(binary), str(data), str(len(obs)), str(seconds)], check=True, capture_output=True, text=True
    )
    sizes = {"float": 4, "double": 8, "int8_t": 1}
    weights = sum(
        sizes[t] * int(n) for t, n in re.findall(r"static const (float|double|int8_t) \w+\[(\d+)\]", source.read_text())
    )
    return float(done.stdout.split()[0]), obj.stat().st_size, weights


def artifact_returns(env_id: str, path: Path, summary: dict) -> list[float]:
    import policykd

    result = policykd.evaluate(env_id, str(path), episodes=summary["eval_episodes"], seed=summary["eval_seed"])
    return result["model"]["returns"]


def student_rows(env_id: str, run: Path, obs: np.ndarray, label: str = "student") -> list[tuple]:
    """SB3, ONNX fp32/int8 and (MLP students) C fp32/int8 rows of one student run folder."""
    import policykd
    from policykd.sb3_models import uses_images
    from policykd.teachers import load_teacher

    summary = json.loads((run / "summary.json").read_text())
    predict, bare = sb3_actors(str(run / "student.zip"), env_id)
    ret = (summary["student_return_mean"], summary["student_return_std"])
    rows = [
        (f"{label} SB3 predict", rate(predict, obs), _size(run / "student.zip"), *ret),
        (f"{label} bare torch actor", rate(bare, obs), "", *ret),
    ]
    for int8, kind in ((False, "fp32"), (True, "int8")):
        path = policykd.export(run, "onnx", int8=int8)
        returns = artifact_returns(env_id, path, summary)
        rows.append(
            (f"{label} ONNX {kind}", rate(onnx_actor(path), obs), _size(path), np.mean(returns), np.std(returns))
        )
    if uses_images(load_teacher(str(run / "student.zip"), env_id=env_id).observation_space):
        return rows  # C export is for MLP students
    for int8, kind in ((False, "fp32"), (True, "int8")):
        path = policykd.export(run, "c", int8=int8)
        with tempfile.TemporaryDirectory(prefix="deploy-") as work:
            speed, obj_bytes, weight_bytes = c_rate(path, obs, Path(work))
        returns = artifact_returns(env_id, path, summary)
        rows.append(
            (
                f"{label} C {kind} (C loop)",
                speed,
                f"{obj_bytes:,} ({weight_bytes:,})",
                np.mean(returns),
                np.std(returns),
            )
        )
    return rows


def noise_floor(env_id: str, run: Path, draws: int = 3, scale: float = 1e-6) -> tuple[float, float]:
    """The lowest and highest mean return of the student's own predict with its actions moved by at most `scale`
    (uniform noise, `draws` seeds): how far float-level differences alone move a chaotic env's returns."""
    from policykd.rollouts import run_episodes, student_actor
    from policykd.teachers import load_teacher

    summary = json.loads((run / "summary.json").read_text())
    loaded = load_teacher(str(run / "student.zip"), env_id=env_id)
    norm = loaded.normalizer
    act = student_actor(loaded.model, norm.normalize_obs if norm is not None else None)
    low, high = loaded.action_space.low, loaded.action_space.high
    means = []
    for draw in range(draws):
        rng = np.random.default_rng(draw)

        def noisy(obs, rng=rng):
            actions = act(obs)
            return np.clip(actions + rng.uniform(-scale, scale, actions.shape).astype(actions.dtype), low, high)

        means.append(run_episodes(noisy, loaded.factory, summary["eval_episodes"], summary["eval_seed"]).mean)
    return min(means), max(means)


def bench_env(env_id: str, run: Path, pruned: Path | None) -> tuple[list[tuple], float, tuple[float, float] | None]:
    """The rows of one env: (what, actions/s, size text, mean return, std return); env steps/s; the noise floor."""
    summary = json.loads((run / "summary.json").read_text())
    teacher_predict, teacher_bare = sb3_actors(summary["teachers"][0], env_id)
    student_predict, _ = sb3_actors(str(run / "student.zip"), env_id)
    obs = observations(env_id, student_predict)
    teacher_zip = Path(summary["teachers"][0])
    teacher_zip = teacher_zip if teacher_zip.is_file() else next(teacher_zip.glob("*.zip"), teacher_zip)
    teacher_ret = (summary["teacher_return_mean"], summary["teacher_return_std"])
    rows = [
        ("teacher SB3 predict", rate(teacher_predict, obs), _size(teacher_zip), *teacher_ret),
        ("teacher bare torch actor", rate(teacher_bare, obs), "", *teacher_ret),
    ]
    rows += student_rows(env_id, run, obs)
    if pruned is not None:
        rows += student_rows(env_id, pruned, obs, label="pruned student")
    continuous = not env_id.startswith("ALE/") and "CartPole" not in env_id
    return rows, env_steps_per_second(env_id), noise_floor(env_id, run) if continuous else None


def _size(path: Path) -> str:
    return f"{path.stat().st_size:,}" if path.is_file() else ""


def table(env_id: str, rows: list[tuple], env_rate: float, floor: tuple[float, float] | None) -> str:
    teacher = rows[0][1]
    lines = [
        f"**{env_id}** (reference, same run: plain env steps/s with random actions {env_rate:,.0f})",
        "",
        "| what | actions/s | × teacher predict | bytes | return (mean ± std) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {what} | {speed:,.0f} | {speed / teacher:.1f} | {size} | {mean:.1f} ± {std:.1f} |"
        for what, speed, size, mean, std in rows
    ]
    if floor is not None:
        lines += [
            "",
            f"Noise floor: the student's own SB3 predict with its actions moved by at most 1e-6 (3 seeds) "
            f"scores {floor[0]:.1f} to {floor[1]:.1f} on the same seeds.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", action="append", help="env id (repeatable; default CartPole-v1 and HalfCheetah-v5)")
    parser.add_argument("--run", type=Path, help="a run folder to use (one --env only)")
    parser.add_argument("--root", type=Path, default=Path("runs/bench-deploy"), help="where missing runs are distilled")
    parser.add_argument(
        "--pruned", type=Path, help="a pruned run folder (policykd prune) to add rows for (one --env only)"
    )
    args = parser.parse_args()
    envs = args.env or ["CartPole-v1", "HalfCheetah-v5"]
    if (args.run or args.pruned) and len(envs) != 1:
        parser.error("--run and --pruned need exactly one --env")
    import torch as th

    print("$ python " + " ".join(sys.argv), flush=True)
    runs = {env_id: ensure_run(env_id, args.run, args.root) for env_id in envs}  # distils on every core
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # then one core for everything timed (the C driver inherits it)
    th.set_num_threads(1)
    for env_id, run in runs.items():
        rows, env_rate, floor = bench_env(env_id, run, args.pruned)
        print("\n" + table(env_id, rows, env_rate, floor) + "\n", flush=True)


if __name__ == "__main__":
    main()
