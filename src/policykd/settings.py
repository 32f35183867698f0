"""Every setting of every command, declared once: one frozen dataclass per command.

The attribute docstrings are the CLI help (`policykd.cli` generates the options from these fields), the defaults
are the only defaults, and `check` (`policykd.fields`) is the only validation of values, run when a settings object
is built, before any env is made. A field's `metadata` says how the CLI spells it (`flag`, a `negative` flag for
booleans, `positional`) and what it must satisfy (`rule`). Precedence for distill: these defaults < the env's
preset (`policykd/resources/envs/*.yaml`) < what the caller passes (flags or keyword arguments).

Adding an option is one field here: its type, default, docstring and rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from policykd.constants import EVAL_SEED_OFFSET
from policykd.errors import PolicykdError, option
from policykd.fields import (
    ALL_POSITIVE,
    FRACTION,
    HALF_OPEN_UNIT,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    check,
    opt,
    spelled,
    stage_archs,
)
from policykd.registry import EXPORTERS, LOSSES, PERTURBATIONS, STUDENT_FAMILIES, augmentations

Driver = Literal["teacher", "student", "dagger"]
BetaSchedule = Literal["linear", "exponential"]
LrSchedule = Literal["constant", "linear"]
TeacherAlgo = Literal["ppo", "sac", "td3", "tqc"]
RlStart = Literal["distilled", "scratch"]
KickSchedule = Literal["constant", "linear", "adaptive"]
Weighting = Literal["uniform", "kl", "teacher-confidence"]
TeacherWeighting = Literal["fixed", "confidence", "return"]


@dataclass(frozen=True)
class DistillSettings:
    """Distil the teacher(s) into a small SB3 student; writes student.zip, summary.json, curves.png and tb/.

    The env's preset (policykd/resources/envs/*.yaml) overrides the defaults shown; flags override both.
    """

    env_id: str = opt(flag="--env")
    """Gymnasium env id, e.g. CartPole-v1, HalfCheetah-v5, ALE/Pong-v5."""
    teachers: tuple[str, ...] = opt((), flag="--teacher")
    """SB3 zip, rl-zoo run folder, zoo:<algo>/<ENV> or shipped agent name; repeat for an ensemble (default: the env's shipped teacher)."""
    teacher_weights: tuple[float, ...] = opt((), rule=(lambda v: all(w >= 0 for w in v), "must be non-negative"))
    """Ensemble weights, one per --teacher, comma-separated like 0.7,0.3 (default: equal)."""
    teacher_weighting: TeacherWeighting = "fixed"
    """How ensemble members are weighted, times --teacher-weights: fixed; confidence, per state by each member's
    exp(-entropy) there; return, per member by its return on the evaluation seeds (measured before the run)."""
    dataset: str | None = None
    """Minari dataset (local id, folder, or remote id) to distil from: offline, or before DAgger rounds with --teacher."""
    trust_teacher: bool = False
    """Load teacher zips with SB3's full load, which runs the pickles inside them (trusted files only)."""
    zoo_folder: str | None = None
    """Where zoo:<algo>/<ENV> specs are looked up (default: $POLICYKD_ZOO_FOLDER, else ~/.cache/policykd/rl-zoo)."""
    out: str | None = None
    """Output folder (default: runs/<env>); re-running the same command there resumes an unfinished run."""
    overwrite: bool = opt(False, identity=False)
    """Replace an existing output folder (only once every check has passed)."""
    resume: bool = opt(False, identity=False)
    """Require a checkpoint in --out and continue it (re-running the same command does this too)."""
    quiet: bool = opt(False, identity=False)
    """No progress bar or summary table."""
    steps: int = opt(20_000, rule=POSITIVE)
    """Env-step budget for collection (all envs together)."""
    rounds: int = opt(4, rule=POSITIVE)
    """Collection rounds; with the dagger driver, beta falls from 1 to 0 across them."""
    driver: Driver = "dagger"
    """Who acts while collecting: teacher, student, or dagger (a beta-mixture of the two)."""
    sample_actions: bool = opt(False, negative="--greedy-actions")
    """While collecting, whoever drives samples its action from its distribution instead of taking the mode
    (DART-style noise, Laskey et al. 2017): the buffer then holds the teacher's labels for states a slightly-off
    action leads to. Evaluation stays deterministic."""
    beta_schedule: BetaSchedule = "linear"
    """DAgger beta: linear (1 in the first round to 0 in the last) or exponential (beta_decay ** round)."""
    beta_decay: float = opt(0.5, rule=FRACTION)
    """Decay per round of the exponential beta schedule."""
    loss: str = opt("kl", choices=LOSSES.names)
    """The distillation loss: a name in policykd.registry.LOSSES (docs/cli.md says what each compares)."""
    temperature: float = opt(1.0, rule=POSITIVE)
    """Softmax temperature of the KL losses (variance scale for Gaussians)."""
    alpha: float = opt(0.0, rule=UNIT)
    """Weight of the hard-label NLL mixed into the soft loss: (1-alpha)*soft + alpha*hard."""
    hint_weight: float = opt(0.0, rule=NON_NEGATIVE)
    """Feature hints (FitNets): weight of the MSE between a learned projection of the student's last hidden layer
    and the teacher's (0: off). The projection is training-only."""
    hint_layer: str | None = None
    """The teacher's module whose output the hints match (a name from its policy's named_modules(), e.g.
    mlp_extractor.policy_net); default: the last hidden layer its action head reads."""
    relation_weight: float = opt(0.0, rule=NON_NEGATIVE)
    """Relational KD: weight of the distance and angle losses between student and teacher latents within each
    minibatch (0: off)."""
    augment: tuple[str, ...] = opt((), choices=augmentations, specs=True)
    """Robust distillation, NAME=SIZE, repeatable: obs-noise=0.05 (the student reads its standardised observation
    plus Gaussian noise of this std; Atari: x 255 pixel levels) or fgsm=0.01 (the perturbation of that size that most
    raises the student's loss); the teacher labels the clean observation."""
    weighting: Weighting = "uniform"
    """Per-state weights of the distillation loss in each minibatch (mean 1): uniform; kl, by how far the student is
    from the teacher there; teacher-confidence, by the teacher's probability of its own greedy action."""
    ent_coef: float = 0.0
    """Entropy bonus on the student's distribution."""
    vf_coef: float = opt(0.5, rule=NON_NEGATIVE)
    """Weight of the value-distillation MSE (actor-critic teachers and students)."""
    student_algo: str | None = opt(None, choices=STUDENT_FAMILIES.names)
    """The SB3 algorithm the student is saved as (default: the teacher's family)."""
    student_arch: tuple[int, ...] | None = opt(None, rule=ALL_POSITIVE)
    """Hidden layer sizes like 64,64, or conv1,conv2,conv3,features for images (default: the widest 2-layer MLP
    within --student-fraction)."""
    student_fraction: float = opt(0.1, rule=FRACTION)
    """Default student size: this fraction of the teacher's acting parameters."""
    init_student: str | None = None
    """Start from this student.zip's weights (same algorithm and arch) instead of a random student: the recovery
    runs of `policykd prune` use it, and so can a user continuing a student on new data."""
    prune_to: float | None = opt(None, rule=FRACTION, identity=False)
    """After distilling, prune the student to at most this fraction of the teacher's acting parameters in
    --prune-cycles prune-and-distil cycles (`policykd prune`; the pruned student goes to <out>/pruned)."""
    prune_cycles: int = opt(3, rule=POSITIVE, identity=False)
    """Prune-and-distil cycles of --prune-to."""
    student_min_width: int = opt(16, rule=POSITIVE)
    """The default MLP student is never narrower than this, whatever the fraction gives: 5 % of a small teacher
    is too few units to play (the MuJoCo preset sets 32: docs/student-size.md)."""
    learning_rate: float = opt(1e-3, rule=POSITIVE)
    """Adam learning rate of the distillation updates."""
    lr_schedule: LrSchedule = "constant"
    """constant, or linear: the rate falls from learning_rate to 0 across the rounds (and within each round across
    its gradient steps), so the last round fine-tunes instead of leaving the student wherever its last large step
    put it."""
    ema: float = opt(0.0, rule=HALF_OPEN_UNIT)
    """Decay of an exponential moving average of the student's weights, updated every gradient step (0: off).
    The averaged student drives collection, is evaluated and is saved."""
    batch_size: int = opt(256, rule=POSITIVE)
    """Minibatch size."""
    epochs: float = opt(4.0, rule=POSITIVE)
    """Passes over the buffer after each round."""
    buffer_size: int = opt(200_000, rule=POSITIVE)
    """Buffer capacity in transitions; rounds aggregate until it is full, then the oldest are replaced."""
    n_envs: int = opt(8, rule=POSITIVE)
    """Parallel envs while collecting."""
    eval_episodes: int = opt(10, rule=POSITIVE)
    """Episodes for each evaluation (teacher and student on the same seeds)."""
    eval_every: int = opt(1, rule=POSITIVE)
    """Evaluate the student every this many rounds (and always at the end)."""
    torch_threads: int | None = opt(None, rule=POSITIVE)
    """CPU threads for torch (default: 1 for MLP students, whose tiny ops only lose to thread hand-offs, measured
    16 s vs 131 s for CartPole on a busy 2-core machine; all cores for CNNs)."""
    checkpoint_every: int | None = opt(None, rule=POSITIVE)
    """Checkpoint every this many env steps (default: after each round's collection and training)."""
    rl_steps: int = opt(0, rule=NON_NEGATIVE)
    """Then continue the student with its own SB3 algorithm's `.learn()` on env reward for this many env steps
    (rl-zoo's hyperparameters for the env, rounded up to whole rollouts), plus kick_weight x the distillation loss
    toward the teacher on each RL minibatch's states (kickstarting): the student can end above its teacher."""
    rl_start: RlStart = "distilled"
    """distilled: RL continues the distilled student (its value head too); scratch: no distillation, a random
    student learns from reward and the kick term together from step 0 (Schmitt et al. 2018)."""
    kick_schedule: KickSchedule = "adaptive"
    """The kick term's weight: constant (kick_weight), linear (kick_weight falling to 0 over --rl-steps) or adaptive
    (QDagger: kick_weight x the student's return gap to the teacher at the last RL evaluation, 0 once it matches)."""
    kick_weight: float = opt(1.0, rule=NON_NEGATIVE)
    """lambda_0: the kick term's weight at its largest."""
    rl_temperature: float = opt(1.0, rule=POSITIVE)
    """The distilled student's policy temperature as RL begins (PPO/A2C: logits / T, or std x T), so the policy RL
    samples from plays like the greedy one evaluated (the kick compares the student at T = 1 with the teacher)."""
    rl_eval_every: int | None = opt(None, rule=POSITIVE)
    """Evaluate and checkpoint the RL student every this many RL env steps (default: --rl-steps / 10)."""
    baseline_scratch: bool = False
    """Also train the same algorithm and student net from the same random weights without teacher for --rl-steps:
    the from-scratch curve on the RL chart."""
    stages: str | None = opt(
        None,
        rule=(
            lambda v: stage_archs(v) is not None,
            "must list shrinking hidden sizes, one stage per colon, like 44,44:16,16",
        ),
    )
    """Multi-stage distillation: teacher -> assistant(s) -> student, e.g. 44,44:16,16; each stage distils the
    previous stage's student (the first the teacher) into these hidden sizes, in <out>/stage-<k>/."""
    seed: int = 0
    """Seeds torch, numpy and the envs: the same seed on CPU gives the same student."""

    def __post_init__(self) -> None:
        check(self)
        if self.stages and self.student_arch:
            raise PolicykdError(
                f"{spelled('stages')} names every stage's hidden sizes: leave out {spelled('student_arch')}"
            )
        if self.rl_start == "scratch" and not self.rl_steps:
            raise PolicykdError(
                f"{option('rl_start', 'scratch')} needs {spelled('rl_steps')} > 0 (the RL env steps to kickstart for)"
            )
        if self.rl_steps and self.dataset and not self.teachers:
            raise PolicykdError(
                f"{spelled('rl_steps')} with a dataset alone: RL needs a live "
                f"{spelled('teachers', '--teacher')} for its distillation term (the kick), and the env for reward"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def out_path(self) -> Path:
        """`out` as a Path: `resolve_distill` (the library's `distill` and the CLI) defaults it to runs/<env>; a
        settings object built by hand must give it."""
        if self.out is None:
            raise PolicykdError(f"{spelled('out')} is needed (`resolve_distill` defaults it to runs/<env>)")
        return Path(self.out)

    def identity(self) -> dict[str, Any]:
        """What a resumed run must repeat: every setting but those marked `identity=False`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("identity", True)}


@dataclass(frozen=True)
class EvaluateSettings:
    """Returns of a model (and a teacher) side by side on identical episode seeds."""

    env_id: str = opt(flag="--env")
    """Gymnasium env id."""
    model: str = opt()
    """A student.zip (a vecnormalize.pkl beside it is applied), a run folder, any teacher spec, or an exported
    student.onnx, policy.c (compiled here with cc) or libpolicy.so."""
    teacher: str | None = None
    """Also evaluate this teacher on the same seeds."""
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


@dataclass(frozen=True)
class RecordSettings:
    """Record a teacher (its full action distribution per step) or a person into a Minari dataset; re-run to resume."""

    env_id: str = opt(flag="--env")
    """Gymnasium env id."""
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


@dataclass(frozen=True)
class TrainTeacherSettings:
    """Train a teacher with rl-zoo's tuned hyperparameters (policykd/resources/envs/teachers.yaml); re-run to resume."""

    env_id: str = opt(flag="--env")
    """Gymnasium env id, e.g. Hopper-v5, CartPole-v1."""
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
    device: str = "cpu"
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
