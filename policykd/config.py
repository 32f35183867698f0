"""All settings of a distillation run, in one frozen dataclass.

Precedence: these defaults < the env's preset in `envs/` < what the caller passes
(CLI flags or keyword arguments to `policykd.run.loop`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from policykd.errors import PolicykdError

LR_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class DistillConfig:
    env_id: str
    """Gymnasium env id, e.g. CartPole-v1 or ALE/Pong-v5."""
    teachers: tuple[str, ...] = ()
    """Teacher specs: SB3 zip, rl-zoo run folder, zoo:<algo>/<ENV>, or a shipped agent name."""
    teacher_weights: tuple[float, ...] = ()
    """Ensemble weights, one per teacher (default: equal)."""
    dataset: str | None = None
    """Minari dataset (local id, folder, or remote id) to distil from: offline, or before DAgger rounds with --teacher."""
    trust_teacher: bool = False
    """Load teacher zips with SB3's full load, which runs the pickles inside them (trusted files only)."""
    zoo_folder: str | None = None
    """Where zoo:<algo>/<ENV> specs are looked up (default: $POLICYKD_ZOO_FOLDER, ~/.cache/policykd/rl-zoo)."""
    out: str = "runs/distill"
    """Output folder: student.zip, summary.json, tb/, and an rl-zoo layout copy."""
    overwrite: bool = False
    """Replace an existing output folder."""
    steps: int = 20_000
    """Env-step budget for collection (all envs together)."""
    rounds: int = 4
    """Collection rounds; with the dagger driver, beta falls from 1 to 0 across them."""
    driver: str = "dagger"
    """Who acts while collecting: teacher, student, or dagger (a beta-mixture)."""
    sample_actions: bool = False
    """While collecting, whoever drives samples its action from its distribution instead of taking
    the mode (DART-style noise, Laskey et al. 2017): the buffer then holds the teacher's labels for
    states a slightly-off action leads to. Evaluation stays deterministic."""
    beta_schedule: str = "linear"
    """DAgger beta schedule: linear or exponential."""
    beta_decay: float = 0.5
    """Decay per round of the exponential beta schedule."""
    loss: str = "kl"
    """kl, reverse_kl, gaussian_kl, ce (= nll), mse_logits, mse_q, mse_action."""
    temperature: float = 1.0
    """Softmax temperature of the KL losses (variance scale for Gaussians)."""
    alpha: float = 0.0
    """Weight of the hard-label NLL mixed into the soft loss: (1-alpha)*soft + alpha*hard."""
    ent_coef: float = 0.0
    """Entropy bonus on the student's distribution."""
    vf_coef: float = 0.5
    """Weight of the value-distillation MSE (actor-critic teachers and students)."""
    student_algo: str | None = None
    """ppo, a2c, dqn, sac or td3 (default: the teacher's family)."""
    student_arch: tuple[int, ...] | None = None
    """Hidden layer sizes (default: the widest 2-layer MLP within student_fraction)."""
    student_fraction: float = 0.1
    """Default student size: this fraction of the teacher's acting parameters."""
    learning_rate: float = 1e-3
    """Adam learning rate of the distillation updates."""
    lr_schedule: str = "constant"
    """constant, or linear: the rate falls from learning_rate to 0 across the rounds (and within each
    round across its gradient steps), so the last round fine-tunes instead of leaving the student
    wherever its last large step put it."""
    ema: float = 0.0
    """Decay of an exponential moving average of the student's weights, updated every gradient
    step (0: off). The averaged student drives collection, is evaluated and is saved."""
    batch_size: int = 256
    """Minibatch size."""
    epochs: float = 4.0
    """Passes over the buffer after each round."""
    buffer_size: int = 200_000
    """Buffer capacity; rounds aggregate until it is full, then the oldest are replaced."""
    n_envs: int = 8
    """Parallel envs while collecting."""
    eval_episodes: int = 10
    """Episodes for each evaluation (teacher and student on the same seeds)."""
    eval_every: int = 1
    """Evaluate the student every this many rounds (and always at the end)."""
    torch_threads: int | None = None
    """CPU threads for torch (default: 1 for MLP students, whose tiny ops only lose to thread
    hand-offs, measured 16 s vs 131 s for CartPole on a busy 2-core machine; all cores for CNNs)."""
    checkpoint_every: int | None = None
    """Checkpoint every this many env steps (default: after each round's collection and training)."""
    seed: int = 0
    """Seeds torch, numpy and the envs: the same seed on CPU gives the same student."""

    def __post_init__(self) -> None:
        checks = [
            (self.steps > 0, f"--steps must be positive, got {self.steps}"),
            (self.rounds > 0, f"--rounds must be positive, got {self.rounds}"),
            (self.temperature > 0, f"--temperature must be positive, got {self.temperature}"),
            (0.0 <= self.alpha <= 1.0, f"--alpha must be within [0, 1], got {self.alpha}"),
            (0.0 <= self.ema < 1.0, f"--ema must be within [0, 1), got {self.ema}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.buffer_size > 0, f"--buffer-size must be positive, got {self.buffer_size}"),
            (self.n_envs > 0, f"--n-envs must be positive, got {self.n_envs}"),
            (self.checkpoint_every is None or self.checkpoint_every > 0, f"--checkpoint-every must be positive, got {self.checkpoint_every}"),
            (self.eval_episodes > 0, f"--eval-episodes must be positive, got {self.eval_episodes}"),
            (self.learning_rate > 0, f"--learning-rate must be positive, got {self.learning_rate}"),
            (self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"),
            (0 < self.student_fraction <= 1, f"--student-fraction must be within (0, 1], got {self.student_fraction}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PolicykdError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DistillConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PolicykdError(f"unknown setting(s): {', '.join(unknown)}")
        tuples, paths = {"teachers", "teacher_weights", "student_arch"}, {"out", "zoo_folder"}
        values = {k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()}
        return cls(**{k: str(v) if k in paths and v is not None else v for k, v in values.items()})
