"""`policykd distill`'s settings, the command with most of them: one frozen dataclass, its choices, and the checks
that need more than one field (a view with what cannot read it, RL without a teacher, stages with an arch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from policykd.errors import PolicykdError, option
from policykd.fields import (
    ALL_POSITIVE,
    DEVICE,
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
from policykd.registry import LOSSES, STUDENT_FAMILIES, augmentations
from policykd.settings.env import EnvFields

Driver = Literal["teacher", "student", "dagger"]
BetaSchedule = Literal["linear", "exponential"]
LrSchedule = Literal["constant", "linear"]
TeacherAlgo = Literal["ppo", "sac", "td3", "tqc"]
RlStart = Literal["distilled", "scratch"]
KickSchedule = Literal["constant", "linear", "adaptive"]
Weighting = Literal["uniform", "kl", "teacher-confidence"]
TeacherWeighting = Literal["select", "fixed", "confidence", "return"]


@dataclass(frozen=True)
class DistillSettings(EnvFields):
    """Distil the teacher(s) into a small SB3 student; writes student.zip, summary.json, curves.png and tb/.

    The env's preset (policykd/resources/envs/*.yaml) overrides the defaults shown; flags override both. --env given
    twice or more: one student for several envs (docs/multitask.md).
    """

    teachers: tuple[str, ...] = opt((), flag="--teacher")
    """SB3 zip, rl-zoo run folder, zoo:<algo>/<ENV> or shipped agent name; repeat for an ensemble (default: the env's shipped teacher)."""
    teacher_weights: tuple[float, ...] = opt((), rule=(lambda v: all(w >= 0 for w in v), "must be non-negative"))
    """Ensemble weights, one per --teacher, comma-separated like 0.7,0.3 (default: equal)."""
    teacher_weighting: TeacherWeighting = "select"
    """How ensemble members are weighted, times --teacher-weights (each member is played on the evaluation seeds
    before the run where it says so): select, the members as good as the best (within a standard error), averaged
    where their average plays as well, else the best alone; fixed; confidence, per state by each member's
    exp(-entropy) there; return, per member by its return."""
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
    student_obs: tuple[str, ...] = opt((), flag="--student-obs")
    """What the student sees, when less than its teacher (repeatable, applied in order): mask=IDX,... or a named
    group (mask=velocities), noise=SIGMA, delay=K, history=K, ram (Atari), or module:function. The teacher labels the
    env's full observation; the student is trained, evaluated and exported on its view (docs/views.md)."""
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
    device: str = opt("auto", rule=DEVICE)
    """cpu, cuda, cuda:N or auto: where the teacher labels and the student trains and acts (auto: the first GPU when
    a network reads images, else the CPU; a checkpoint resumes on any device, the student loads on a CPU)."""
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
    rl_critic_warmup: int | None = opt(None, rule=NON_NEGATIVE)
    """RL env steps at the start of RL from the distilled student in which only its critic learns (the actor's
    updates are dropped), so the actor's first updates follow advantages from a critic that has seen the student's
    returns (default: the first RL segment, --rl-eval-every; 0: none). Not with --rl-start scratch."""
    rl_lr_scale: float | None = opt(None, rule=POSITIVE)
    """The RL student's learning rate (rl-zoo's for the env, its schedule kept) times this (default: 1/3 with
    --rl-start distilled, where RL fine-tunes a student that already plays; 1 with --rl-start scratch). The
    from-scratch baseline keeps rl-zoo's."""
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
        if self.rl_critic_warmup and (self.rl_start == "scratch" or self.rl_critic_warmup >= self.rl_steps):
            raise PolicykdError(
                f"{spelled('rl_critic_warmup')} warms up a distilled student's critic for part of "
                f"{spelled('rl_steps')}: it needs {option('rl_start', 'distilled')} and fewer steps than RL has"
            )
        if self.rl_steps and self.dataset and not self.teachers:
            raise PolicykdError(
                f"{spelled('rl_steps')} with a dataset alone: RL needs a live "
                f"{spelled('teachers', '--teacher')} for its distillation term (the kick), and the env for reward"
            )

        if self.student_obs:
            _check_view_fits(self)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def out_path(self) -> Path:
        """`out` as a Path: `resolve_distill` (the library's `distill` and the CLI) defaults it to runs/<env>; a
        settings object built by hand must give it."""
        if self.out is None:
            raise PolicykdError(f"{spelled('out')} is needed (`resolve_distill` defaults it to runs/<env>)")
        return Path(self.out)

    def identity(self) -> dict[str, object]:
        """What a resumed run must repeat: every setting but those marked `identity=False`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("identity", True)}


def _check_view_fits(settings: DistillSettings) -> None:
    """What a student view cannot be combined with (yet): whatever reads the teacher's observation through the student's
    inputs (hints and relations compare their latents on one observation; a dataset holds the teacher's observations;
    RL's kick labels the student's states with the teacher)."""
    clashes = {
        "hint_weight": settings.hint_weight,
        "relation_weight": settings.relation_weight,
        "dataset": settings.dataset,
        "rl_steps": settings.rl_steps,
        "stages": settings.stages,
    }
    for name, value in clashes.items():
        if value:
            raise PolicykdError(
                f"{spelled('student_obs')} gives the student another observation than its teacher's: "
                f"{spelled(name)} is not supported with it (it needs both on the same observation)"
            )
