"""The settings of every other command (evaluate, record, train-teacher, plot, export, prune, sweep), one frozen
dataclass each, declared the same way as `DistillSettings` (policykd.settings.distill).
"""

from __future__ import annotations

from dataclasses import dataclass

from policykd.constants import EVAL_SEED_OFFSET
from policykd.errors import PolicykdError
from policykd.fields import (
    ALL_POSITIVE,
    DEVICE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    check,
    opt,
    spelled,
)
from policykd.registry import EXPORTERS, PERTURBATIONS
from policykd.settings.distill import DistillSettings, TeacherAlgo
from policykd.settings.env import EnvFields


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings(EnvFields):
    """Returns of a model (and a teacher) side by side on identical episode seeds."""

    model: str = opt()
    """A student.zip (a vecnormalize.pkl beside it is applied), a run folder, any teacher spec, or an exported
    student.onnx, policy.c (compiled here with cc) or libpolicy.so."""
    teacher: str | None = None
    """Also evaluate this teacher on the same seeds."""
    student_obs: tuple[str, ...] = opt((), flag="--student-obs")
    """The model's view of the env (distill's --student-obs; default: what the summary.json beside it says)."""
    device: str = opt("auto", rule=DEVICE)
    """cpu, cuda, cuda:N or auto (the first GPU for networks that read images, else the CPU)."""
    episodes: int = opt(10, rule=POSITIVE)
    """Episodes, one per env, side by side."""
    seed: int = EVAL_SEED_OFFSET
    """Episode i is reset with seed + i (distill's evaluations use its --seed + 10000)."""
    zoo_folder: str | None = None
    """Where zoo:<algo>/<ENV> specs are looked up."""
    trust_teacher: bool = False
    """Use SB3's full load (runs the zip's pickles)."""
    perturb: tuple[str, ...] = opt((), choices=PERTURBATIONS.names, specs=True)
    """Also evaluate under NAME=SIZE, repeatable: obs-noise=0.05 (Gaussian, x each observation dim's std), sticky=0.5,
    action-noise=0.1 (x half the action range; discrete: random-action probability), fgsm=0.01, pgd=0.01
    (adversarial, budget x the std; Atari: x 255 pixel levels). Same seeds for every condition."""
    as_json: bool = opt(False, flag="--json")
    """Print JSON instead of a table."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True, kw_only=True)
class RecordSettings(EnvFields):
    """Record a teacher (its full action distribution per step) or a person into a Minari dataset; re-run to resume."""

    dataset: str = opt()
    """Minari dataset id to write, e.g. pong/teacher-v0 (under $MINARI_DATASETS_PATH)."""
    episodes: int = opt(rule=POSITIVE)
    """Episodes to record (episode i is reset with seed + i)."""
    teacher: str | None = None
    """Teacher spec (default: the env's shipped teacher)."""
    human: bool = False
    """A person plays with the keyboard (needs a display); actions only."""
    fps: float = opt(15.0, rule=NON_NEGATIVE)
    """With --human: agent steps per second (15 = Atari's real speed; 0 = unpaced)."""
    actions_only: bool = False
    """Store the teacher's actions, not its distributions (as an expert's logs would be)."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    zoo_folder: str | None = None
    """Where zoo:<algo>/<ENV> specs are looked up."""
    trust_teacher: bool = False
    """Use SB3's full load (runs the zip's pickles)."""
    overwrite: bool = False
    """Replace an existing dataset (and any unfinished recording of it)."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        check(self)
        if self.human and self.teacher:
            raise PolicykdError(
                f"{spelled('human')} and {spelled('teacher')} exclude each other: record a person or a teacher"
            )


@dataclass(frozen=True, kw_only=True)
class TrainTeacherSettings(EnvFields):
    """Train a teacher with rl-zoo's tuned hyperparameters (policykd/resources/envs/teachers.yaml); re-run to resume."""

    algo: TeacherAlgo = opt()
    """sac, tqc, ppo or td3."""
    steps: int | None = opt(None, rule=POSITIVE)
    """Env steps (default: rl-zoo's n_timesteps for the env)."""
    out: str | None = None
    """Output folder (default: runs/teachers/<algo>-<env>)."""
    seed: int = 0
    """Seeds the algorithm and the envs."""
    checkpoint_every: int | None = opt(None, rule=POSITIVE)
    """Checkpoint every this many env steps (default: about --steps/10, at least one rollout)."""
    eval_episodes: int = opt(10, rule=POSITIVE)
    """Deterministic episodes for the model card's return."""
    n_envs: int | None = opt(None, rule=POSITIVE)
    """Parallel envs (default: rl-zoo's n_envs)."""
    overwrite: bool = False
    """Replace a finished or unfinished run in --out."""
    device: str = opt("cpu", rule=DEVICE)
    """cpu, cuda[:N] or auto; a checkpoint resumes on any device (a GPU does not pay for these small MLPs)."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PlotSettings:
    """Several runs on one figure: teacher and student returns against env steps, losses below."""

    runs: tuple[str, ...] = opt(positional=True, rule=(lambda v: len(v) > 0, "must name at least one run folder"))
    """Run folders (each with a summary.json)."""
    out: str | None = None
    """The PNG to write (default: curves.png in the run folder for one run, runs/plot.png for several)."""
    labels: tuple[str, ...] = opt((), flag="--label")
    """A legend label per run, repeatable (default: the folder names)."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ExportSettings:
    """Export a student to a file that acts without Python: ONNX, or C for MLP students (docs/export.md).

    Observation normalisation (vecnormalize.pkl beside the zip), image scaling and the action's
    post-processing are inside the file: it gives SB3's predict(deterministic=True) action.
    """

    source: str = opt(positional=True)
    """A run folder written by distill (its student.zip), or a student.zip (a vecnormalize.pkl beside it is applied)."""
    format: str = opt("onnx", choices=EXPORTERS.names)
    """The file format: one of the registered exporters (policykd.registry.EXPORTERS; docs/export.md says what each
    writes and for which students)."""
    out: str | None = None
    """A file with the format's suffix, or a folder (existing, or a path without a suffix) to write the format's default name in; missing folders are created (default: beside the student.zip, student.onnx or policy.c with policy.h; with --int8 student.int8.onnx or policy_int8.c with policy_int8.h). A .c file's header is its name with .h."""
    env_id: str | None = opt(None, flag="--env")
    """The env the student acts in (default: the env_id of the summary.json beside the zip)."""
    int8: bool = False
    """int8 weights (student.int8.onnx: onnxruntime static quantisation calibrated on a seeded rollout; policy_int8.c: per-channel int8 weights, float scales)."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PruneSettings:
    """Prune a run's student to a smaller dense SB3 model: whole units and channels out by importance, then distilled
    again from the same teacher, in a few cycles (docs/prune.md). Re-run the same command to resume."""

    run: str = opt(positional=True)
    """A run folder written by distill (its config.json names the teacher and settings the recovery repeats)."""
    fraction: float = opt(rule=FRACTION)
    """The pruned student's acting parameters are at most this fraction of the teacher's."""
    cycles: int = opt(3, rule=POSITIVE)
    """Prune-and-distil cycles: the size falls geometrically from the student's to the target across them."""
    steps: int | None = opt(None, rule=POSITIVE)
    """Env steps of each cycle's recovery distillation (default: the run's own --steps)."""
    out: str | None = None
    """Output folder (default: <run>/pruned): cycle-<k>/ run folders, and the final student.zip and summary.json."""
    overwrite: bool = False
    """Replace an existing output folder."""
    quiet: bool = False
    """No progress bars."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SweepSettings:
    """Many distillations as Ray Tune trials (docs/sweep.md): every combination of --grid values x --seeds, or with
    --target the search for the smallest student whose mean return over the seeds reaches target x the teacher's.
    Writes one run folder per trial under <out>/trials, sweep.csv, sweep.md and pareto.png; re-run to resume."""

    env_id: str = opt(flag="--env")
    """Gymnasium env id."""
    teachers: tuple[str, ...] = opt((), flag="--teacher")
    """Teacher spec(s) of every trial, as distill's --teacher (default: the env's shipped teacher)."""
    grid: tuple[str, ...] = ()
    """A distill setting and its values, KEY=V1,V2,... (repeatable; keys as distill spells them): a list value is
    written with x (student-arch=8x8,16x16), student-width=8,16,32 is 2-layer MLPs of those widths, and a key with one
    value (steps=5000) applies to every trial."""
    seeds: int = opt(1, rule=POSITIVE)
    """Seeds 0..N-1 of every combination."""
    target: float | None = opt(None, rule=(lambda v: 0 < v <= 1.5, "must be within (0, 1.5]"))
    """Search the smallest student whose mean return over the seeds is at least this fraction of the teacher's,
    over the grid's student-width/student-arch values (else --widths): bisection, one seed first where it decides."""
    widths: tuple[int, ...] = opt((4, 8, 16, 32, 64, 128, 256), rule=ALL_POSITIVE)
    """2-layer widths --target searches when the grid gives no student size."""
    margin: float = opt(0.1, rule=UNIT)
    """--target: one seed decides a size when its return ratio is this far from the target; a trial whose ratio is
    3 x this below the target after half its env steps is stopped as hopeless."""
    cpus_per_trial: float = opt(1.0, rule=POSITIVE)
    """CPUs Ray gives each trial (its torch threads for CNN students)."""
    max_failures: int = opt(2, rule=NON_NEGATIVE)
    """Retries of a trial whose worker died; the retry resumes the trial's run from its checkpoint."""
    address: str | None = None
    """An existing Ray cluster (host:port, ray://host:port or auto); default: Ray started on this machine."""
    out: str | None = None
    """Output folder (default: runs/sweep-<env>); re-running the same command there resumes the sweep."""
    quiet: bool = False
    """No progress bar or result table."""

    def __post_init__(self) -> None:
        check(self)


COMMANDS: dict[str, type] = {
    "distill": DistillSettings,
    "evaluate": EvaluateSettings,
    "record": RecordSettings,
    "train-teacher": TrainTeacherSettings,
    "plot": PlotSettings,
    "export": ExportSettings,
    "prune": PruneSettings,
    "sweep": SweepSettings,
}
