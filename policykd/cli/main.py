"""`policykd distill | evaluate | record | teachers | train-teacher`: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from policykd.errors import PolicykdError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil a heavy RL policy into a small SB3 student.")
err_console = Console(stderr=True)


def _arch(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        arch = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise PolicykdError(f"--student-arch must look like 64,64, got {text!r}") from None
    if not arch or min(arch) <= 0:
        raise PolicykdError(f"--student-arch must list positive layer sizes, got {text!r}")
    return arch


@app.command()
def distill(
    env: str = typer.Option(..., "--env", help="Gymnasium env id, e.g. CartPole-v1, HalfCheetah-v5, ALE/Pong-v5."),
    teacher: Optional[List[str]] = typer.Option(None, "--teacher", help="SB3 zip, rl-zoo run folder, zoo:<algo>/<ENV> or shipped agent; repeat for an ensemble. Default: the env's shipped teacher."),
    teacher_weights: Optional[str] = typer.Option(None, "--teacher-weights", help="Comma-separated ensemble weights, one per --teacher."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Minari dataset id or folder: distil offline from it (with --teacher, DAgger rounds follow)."),
    zoo_folder: Optional[str] = typer.Option(None, "--zoo-folder", help="Where zoo:<algo>/<ENV> is looked up (default $POLICYKD_ZOO_FOLDER)."),
    trust_teacher: bool = typer.Option(False, "--trust-teacher", help="Use SB3's full load, which runs the pickles in the zip (default: load without unpickling)."),
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (default runs/<env>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Env-step budget."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Collection rounds (DAgger iterations)."),
    driver: Optional[str] = typer.Option(None, "--driver", help="teacher | student | dagger."),
    sample_actions: Optional[bool] = typer.Option(None, "--sample-actions/--greedy-actions", help="While collecting, drivers sample their actions (DART-style noise) instead of acting greedily."),
    beta_schedule: Optional[str] = typer.Option(None, "--beta-schedule", help="DAgger beta: linear | exponential."),
    loss: Optional[str] = typer.Option(None, "--loss", help="kl | reverse_kl | gaussian_kl | ce | nll | mse_logits | mse_q | mse_action."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="KL temperature."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Hard-label weight: (1-alpha)*soft + alpha*hard."),
    ent_coef: Optional[float] = typer.Option(None, "--ent-coef", help="Entropy bonus on the student."),
    student_algo: Optional[str] = typer.Option(None, "--student-algo", help="ppo | a2c | dqn | sac | td3 (default: teacher's family)."),
    student_arch: Optional[str] = typer.Option(None, "--student-arch", help="Hidden sizes, e.g. 64,64 (default: within --student-fraction)."),
    student_fraction: Optional[float] = typer.Option(None, "--student-fraction", help="Default student size as a fraction of the teacher's acting parameters."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="Adam learning rate."),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="constant | linear (falls to 0 by the last gradient step)."),
    ema: Optional[float] = typer.Option(None, "--ema", help="Decay of a moving average of the student's weights, which drives, is evaluated and is saved (0: off)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the buffer per round."),
    buffer_size: Optional[int] = typer.Option(None, "--buffer-size", help="Buffer capacity in transitions."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Parallel envs while collecting."),
    eval_episodes: Optional[int] = typer.Option(None, "--eval-episodes", help="Episodes per evaluation (same seeds for teacher and student)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N rounds."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    torch_threads: Optional[int] = typer.Option(None, "--torch-threads", help="CPU threads for torch (default: 1 for MLP students, all for CNNs)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint every N env steps (default: every round)."),
    resume: bool = typer.Option(False, "--resume", help="Require a checkpoint in --out and continue it (re-running the same command does this too)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or table."),
) -> None:
    """Distil the teacher(s) into a small SB3 student; writes student.zip, summary.json and tb/."""
    from policykd.run.loop import Distiller
    from policykd.presets import resolve_config

    weights = None
    if teacher_weights:
        try:
            weights = tuple(float(w) for w in teacher_weights.split(","))
        except ValueError:
            raise PolicykdError(f"--teacher-weights must be numbers like 0.7,0.3, got {teacher_weights!r}") from None
    config = resolve_config(
        env,
        teachers=tuple(teacher) if teacher else None,
        teacher_weights=weights,
        dataset=dataset,
        zoo_folder=zoo_folder,
        trust_teacher=trust_teacher or None,
        out=out or f"runs/{env.replace('/', '-')}",
        overwrite=overwrite or None,
        steps=steps,
        rounds=rounds,
        driver=driver,
        beta_schedule=beta_schedule,
        sample_actions=sample_actions,
        loss=loss,
        temperature=temperature,
        alpha=alpha,
        ent_coef=ent_coef,
        student_algo=student_algo,
        student_arch=_arch(student_arch),
        student_fraction=student_fraction,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        ema=ema,
        batch_size=batch_size,
        epochs=epochs,
        buffer_size=buffer_size,
        n_envs=n_envs,
        eval_episodes=eval_episodes,
        eval_every=eval_every,
        seed=seed,
        checkpoint_every=checkpoint_every,
        torch_threads=torch_threads,
    )
    if resume:
        from policykd.run.checkpoint import read_pointer

        if read_pointer(Path(config.out)) is None:
            raise PolicykdError(f"--resume: no checkpoint in {config.out}")
    try:
        Distiller(config, quiet=quiet).run()
    except KeyboardInterrupt:  # the run has written its student and kept its checkpoint
        raise typer.Exit(130) from None


@app.command()
def evaluate(
    env: str = typer.Option(..., "--env", help="Gymnasium env id."),
    model: str = typer.Option(..., "--model", help="A student.zip (vecnormalize.pkl beside it is applied) or any teacher spec."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Also evaluate this teacher on the same seeds."),
    episodes: int = typer.Option(10, "--episodes"),
    seed: int = typer.Option(10_000, "--seed", help="Episode i is reset with seed + i."),
    zoo_folder: Optional[str] = typer.Option(None, "--zoo-folder"),
    trust_teacher: bool = typer.Option(False, "--trust-teacher", help="Use SB3's full load (runs the zip's pickles)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Returns of a model (and a teacher) side by side on identical episode seeds."""
    from policykd.run.evaluate import run_episodes, teacher_actor
    from policykd.models import uses_images
    from policykd.teachers import load_teacher

    if episodes <= 0:
        raise PolicykdError(f"--episodes must be positive, got {episodes}")
    policies = {"model": load_teacher(model, env_id=env, zoo_folder=zoo_folder, trust=trust_teacher)}
    if teacher:
        policies["teacher"] = load_teacher(teacher, env_id=env, zoo_folder=zoo_folder, trust=trust_teacher)
    if not any(uses_images(p.observation_space) for p in policies.values()):
        import torch as th

        th.set_num_threads(1)  # as distill and train-teacher evaluate MLPs: the same float sums, the same episodes
    results = {}
    for role, policy in policies.items():
        returns = run_episodes(teacher_actor(policy), policy.factory, episodes, seed)
        results[role] = {
            "path": policy.name,
            "algo": policy.algo,
            "params": policy.acting_params,
            "return_mean": returns.mean,
            "return_std": returns.std,
            "returns": returns.returns.tolist(),
        }
    if as_json:
        print(json.dumps({"env_id": env, "episodes": episodes, "seed": seed, **results}, indent=2))
        return
    table = Table(title=f"{env}: {episodes} episodes, seeds {seed}..{seed + episodes - 1}")
    for column in ("", "algo", "params", "return"):
        table.add_column(column)
    for role, r in results.items():
        table.add_row(role, r["algo"], f"{r['params']:,}", f"{r['return_mean']:.2f} ± {r['return_std']:.2f}")
    Console().print(table)


@app.command()
def record(
    env: str = typer.Option(..., "--env", help="Gymnasium env id."),
    dataset: str = typer.Option(..., "--dataset", help="Minari dataset id to write, e.g. pong/teacher-v0 (under $MINARI_DATASETS_PATH)."),
    episodes: int = typer.Option(..., "--episodes", help="Episodes to record (episode i is reset with seed + i)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher spec (default: the env's shipped teacher)."),
    human: bool = typer.Option(False, "--human", help="A person plays with the keyboard (needs a display); actions only."),
    fps: float = typer.Option(15.0, "--fps", help="With --human: agent steps per second (15 = Atari's real speed; 0 = unpaced)."),
    actions_only: bool = typer.Option(False, "--actions-only", help="Store the teacher's actions, not its distributions (as an expert's logs would be)."),
    seed: int = typer.Option(0, "--seed"),
    zoo_folder: Optional[str] = typer.Option(None, "--zoo-folder"),
    trust_teacher: bool = typer.Option(False, "--trust-teacher", help="Use SB3's full load (runs the zip's pickles)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset (and any unfinished recording of it)."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Record a teacher (its full action distribution per step) or a person into a Minari dataset; re-run to resume."""
    from policykd.envs import EnvFactory, check_env_id
    from policykd.data.record import RecordSettings, check_dataset_id, record as run_record, teacher_policy

    if episodes <= 0:
        raise PolicykdError(f"--episodes must be positive, got {episodes}")
    if human and teacher:
        raise PolicykdError("--human and --teacher exclude each other: record a person or a teacher")
    check_env_id(env)
    check_dataset_id(dataset)
    if human:
        from policykd.data.human import human_policy

        factory, policy = human_policy(EnvFactory(env), fps=fps)  # RGB rendering on, and the window
        loaded = None
    else:
        from policykd.run.loop import resolve_teacher_specs
        from policykd.teachers import load_teacher

        spec = teacher or resolve_teacher_specs(env, ())[0]
        loaded = load_teacher(spec, env_id=env, zoo_folder=zoo_folder, trust=trust_teacher)
        factory, policy = loaded.factory, teacher_policy(loaded, actions_only=actions_only)
    source = "human" if human else ("teacher-actions" if actions_only else "teacher")
    settings = RecordSettings(env, dataset, episodes, seed, source, None if human else (teacher or loaded.name))
    try:
        run_record(factory, policy, settings, teacher=loaded, overwrite=overwrite, quiet=quiet)
    except KeyboardInterrupt:
        from policykd.data.record import partial_folder

        err_console.print(f"interrupted: the episodes recorded so far are in {partial_folder(dataset)}; run the same command again to resume")
        raise typer.Exit(130) from None


@app.command()
def teachers() -> None:
    """The teachers this repository ships, and what each was measured at."""
    from policykd.teachers.shipped import shipped_agents

    table = Table(title="shipped teachers (agents/)")
    for column in ("name", "env", "algo", "env steps", "return", "episodes"):
        table.add_column(column)
    for card in shipped_agents():
        table.add_row(card.name, card.env_id, card.algo, f"{card.env_steps:,}", f"{card.return_mean:+.2f} ± {card.return_std:.2f}", str(card.episodes))
    Console().print(table)


@app.command("train-teacher")
def train_teacher(
    env: str = typer.Option(..., "--env", help="Gymnasium env id, e.g. Hopper-v5, CartPole-v1."),
    algo: str = typer.Option(..., "--algo", help="sac | tqc | ppo | td3."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Env steps (default: rl-zoo's n_timesteps for the env)."),
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (default runs/teachers/<algo>-<env>)."),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint every N env steps (default: about --steps/10)."),
    eval_episodes: int = typer.Option(10, "--eval-episodes", help="Deterministic episodes for the model card's return."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Parallel envs (default: rl-zoo's n_envs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished or unfinished run in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda[:N] or auto; a checkpoint resumes on any device."),
) -> None:
    """Train a teacher with rl-zoo's tuned hyperparameters (envs/teachers.yaml); re-run to resume."""
    from policykd.teachers.train import resolve, train_teacher as run

    settings, hyperparams = resolve(env, algo, steps=steps, out=out, seed=seed, checkpoint_every=checkpoint_every,
                                    eval_episodes=eval_episodes, n_envs=n_envs, overwrite=overwrite, device=device)
    try:
        run(settings, hyperparams, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # the checkpoint is written and its path printed
        raise typer.Exit(130) from None


def main() -> None:
    # Ctrl-C must reach the run (it checkpoints and exits 130) even when the parent shell
    # started us with SIGINT ignored, as non-interactive shells do for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit codes in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except PolicykdError as err:
        err_console.print(f"[red]error:[/red] {err}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
