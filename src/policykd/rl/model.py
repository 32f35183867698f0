"""The RL student: an SB3 model of the student's algorithm and network, with rl-zoo's hyperparameters for the env.

RL continues the student with its own algorithm's `.learn()`; nothing here reimplements an update. This module
decides what that model is built from (the distilled student.zip, or the run's random student), which
hyperparameters it gets (rl-zoo's entry for the algorithm and env in `envs/teachers.yaml`, without its network:
the student keeps its own), what env it acts in (the teacher's env stack, behind the run's frozen VecNormalize if
it has one), and how `learn()` runs one segment so that a killed run repeats it exactly.
"""

from __future__ import annotations

import inspect
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch.utils.hooks import RemovableHandle

from policykd.distributions import obs_tensor, policy_dist
from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.rl.replay import FramesOnceReplayBuffer, frames_once
from policykd.sb3_models import ALGOS
from policykd.teachers.hyperparams import action_noise, lookup, train_freq_steps

NOT_FOR_STUDENTS = ("policy_kwargs", "use_sde", "sde_sample_freq")
"""rl-zoo keys that describe the teacher's network, which the student does not have."""


@dataclass(frozen=True)
class RLConfig:
    """What RL runs with: constructor arguments, parallel envs, and where they came from (for the summary)."""

    kwargs: dict[str, Any]
    n_envs: int
    source: str

    def with_learning_rate_scaled(self, algo: str, scale: float) -> RLConfig:
        """The same hyperparameters with the learning rate (rl-zoo's, or SB3's default for `algo`) times `scale`, its
        schedule kept: a linear schedule stays SB3's `LinearSchedule`, so the saved model still loads without us."""
        if scale == 1.0:
            return self
        rate = self.kwargs.get("learning_rate", inspect.signature(ALGOS[algo]).parameters["learning_rate"].default)
        if isinstance(rate, LinearSchedule):
            scaled: LinearSchedule | float = LinearSchedule(rate.start * scale, rate.end * scale, rate.end_fraction)
        elif callable(rate):
            raise PolicykdError(f"RL hyperparameters ({self.source}): cannot scale the learning rate {rate!r}")
        else:
            scaled = float(rate) * scale
        return RLConfig(
            {**self.kwargs, "learning_rate": scaled}, self.n_envs, f"{self.source}, learning rate x {scale:.3g}"
        )

    def rollout(self, algo: str) -> int:
        """Env steps of one rollout (all envs): RL segments end on whole rollouts, where SB3 has trained on every step."""
        if algo in ("ppo", "a2c"):
            return self.n_envs * int(self.kwargs.get("n_steps", 2048 if algo == "ppo" else 5))
        return self.n_envs * train_freq_steps(self.kwargs.get("train_freq", 1))


def rl_config(algo: str, env_id: str, action_space: spaces.Space) -> RLConfig:
    """rl-zoo's entry for `algo` on `env_id`, without the teacher's network; SB3's defaults where the table has none."""
    try:
        hp = lookup(algo, env_id)
    except PolicykdError:
        return RLConfig({}, 1, f"SB3 {algo.upper()} defaults (no rl-zoo entry for {env_id} in envs/teachers.yaml)")
    kwargs = {k: v for k, v in action_noise(hp.model_kwargs, action_space).items() if k not in NOT_FOR_STUDENTS}
    return RLConfig(kwargs, hp.n_envs, f"rl-zoo {algo} [{hp.key}] in envs/teachers.yaml")


def segment_ends(total: int, every: int, rollout: int) -> list[int]:
    """Cumulative RL env steps at the end of each segment: every `every` steps rounded to whole rollouts (at least
    one), the last one `total` rounded up to a whole rollout."""
    last = math.ceil(total / rollout) * rollout
    step = max(1, round(every / rollout)) * rollout
    return [*range(step, last, step), last]


def make_env(factory: EnvFactory, n_envs: int, seed: int, normalizer_file: Path | None) -> VecEnv:
    """The teacher's env stack; behind the run's VecNormalize (frozen: the student reads what it was distilled on)."""
    venv = factory.make(n_envs, seed)
    if normalizer_file is None:
        return venv
    normalizer = VecNormalize.load(str(normalizer_file), venv)
    normalizer.training, normalizer.norm_reward = False, False
    return normalizer


def load_rl_model(
    algo: str, source: Path | BaseAlgorithm, venv: VecEnv, config: RLConfig, device: th.device | str = "cpu"
) -> BaseAlgorithm:
    """The student as an RL model: SB3's `load` of its zip (or of an in-memory model) with the RL hyperparameters,
    which rebuilds the buffers and schedules for them and keeps every weight (the distilled value head too). Off-policy
    students on Atari frames replay from `FramesOnceReplayBuffer`."""
    kwargs = dict(config.kwargs)
    if issubclass(ALGOS[algo], OffPolicyAlgorithm) and frames_once(venv.observation_space):
        kwargs["replay_buffer_class"] = FramesOnceReplayBuffer  # a frame per transition, not eight
    zip_file: Path | io.BytesIO
    if isinstance(source, BaseAlgorithm):
        zip_file = io.BytesIO()
        source.save(zip_file)
        zip_file.seek(0)
    else:
        zip_file = source
    try:
        return ALGOS[algo].load(zip_file, env=venv, device=device, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise PolicykdError(
            f"RL hyperparameters ({config.source}) do not fit the {algo.upper()} student: {type(err).__name__}: {err}"
        ) from None


def set_temperature(model: BaseAlgorithm, temperature: float) -> float | None:
    """The student's policy at `temperature`, in place and still plain SB3: a categorical policy's logits divided by
    it (its action layer scaled), a Gaussian PPO/A2C policy's std multiplied by it. Returns the temperature set, or
    None for policies it does not apply to (SAC/TQC tune their entropy themselves, TD3 and DQN have none).

    Why: a student distilled from a high-entropy teacher (Pong's default student: 1.47 nats of ln 6 = 1.79) plays well
    greedily (+12.9) but not sampled (+0.0 over 8 games), and on-policy RL improves the sampled policy, moving logits
    that are nearly flat, so the greedy play it is evaluated by gets worse first (+9.9 after 200k PPO steps). At
    T = 0.33 the sampled student plays like the greedy one (+13.4, entropy 0.92), and RL starts from that."""
    policy = model.policy
    dist = getattr(policy, "action_dist", None)  # SAC/TD3/DQN policies have none
    if not isinstance(dist, (CategoricalDistribution, DiagGaussianDistribution)):
        return None
    with th.no_grad():
        if isinstance(dist, CategoricalDistribution):
            policy.get_parameter("action_net.weight").div_(temperature)
            policy.get_parameter("action_net.bias").div_(temperature)
        else:
            policy.get_parameter("log_std").add_(math.log(temperature))
    return temperature


def copy_teacher_critic(model: BaseAlgorithm, teacher_model: BaseAlgorithm) -> bool:
    """SAC student, SAC teacher with a critic of the same shape: the student starts from the teacher's critic and
    entropy coefficient instead of random ones, so its first actor updates follow a critic that knows the task.
    Returns whether it copied."""
    ours, theirs = _critics(model), _critics(teacher_model)
    if ours is None or theirs is None or type(teacher_model) is not type(model):
        return False
    try:
        for mine, source in zip(ours, theirs):  # the critic, then its target
            mine.load_state_dict(source.state_dict())
    except RuntimeError:
        return False
    our_coef: th.Tensor | None = getattr(model, "log_ent_coef", None)
    their_coef: th.Tensor | None = getattr(teacher_model, "log_ent_coef", None)
    if our_coef is not None and their_coef is not None:
        our_coef.data.copy_(their_coef.data)
    return True


def acting_parts(model: BaseAlgorithm) -> tuple[th.nn.Module, th.optim.Optimizer]:
    """The features extractor whose input is the RL minibatch's observations, and the optimizer that steps the acting
    network: SAC/TD3 their actor's; DQN its Q-network's; PPO/A2C the policy's."""
    actor = getattr(model, "actor", None)
    if actor is not None:
        return actor.features_extractor, actor.optimizer
    q_net = getattr(model, "q_net", None)
    if q_net is not None:
        return q_net.features_extractor, model.policy.optimizer
    policy = model.policy
    extractor = "features_extractor" if policy.share_features_extractor else "pi_features_extractor"
    return policy.get_submodule(extractor), policy.optimizer


def actor_parameters(model: BaseAlgorithm) -> list[th.nn.Parameter]:
    """The parameters the policy's action distribution depends on (features extractor included when it is shared),
    found by autograd from one observation, so any SB3 or sb3-contrib policy is covered; everything else the
    optimizer steps (value head, critic layers) is the critic's."""
    policy = model.policy
    space = policy.observation_space
    obs = obs_tensor(policy, np.zeros((1, *(space.shape or ())), dtype=space.dtype))
    params = [p for p in policy.parameters() if p.requires_grad]
    with th.enable_grad():
        dist = policy_dist(policy, obs)
        out = th.stack([t.float().sum() for t in (dist.logits, dist.mean, dist.log_std) if t is not None]).sum()
        grads = th.autograd.grad(out, params, allow_unused=True)
    return [p for p, g in zip(params, grads) if g is not None]


def warm_up_critic(model: BaseAlgorithm, until: int) -> RemovableHandle | None:
    """Only the critic learns while the model has taken at most `until` env steps: before each optimizer step that
    would move the actor, the actor's gradients are dropped (PPO/A2C: in the one optimizer; SAC/TD3: the actor's own).

    Why: a distilled actor's first RL updates follow advantages from a critic that has not seen the student's returns
    (a random one, or the teacher's values distilled): on CartPole from a weak teacher they sent PPO into a
    near-deterministic policy stuck near 120 at most seeds, where the same student with a warmed-up critic went on
    (docs/rl.md). DQN's Q-network is its actor: None, nothing to warm up."""
    if getattr(model, "q_net", None) is not None:
        return None
    actor = actor_parameters(model)
    _, optimizer = acting_parts(model)

    def drop(optimizer: th.optim.Optimizer, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        if model.num_timesteps <= until:
            for param in actor:
                param.grad = None

    return optimizer.register_step_pre_hook(drop)


def _critics(model: BaseAlgorithm) -> tuple[th.nn.Module, th.nn.Module] | None:
    """An actor-critic's (SAC, TD3, TQC) critic and target critic; None for the others."""
    critic, target = getattr(model, "critic", None), getattr(model, "critic_target", None)
    return (critic, target) if critic is not None and target is not None else None


class _Until(BaseCallback):
    """Stops `learn()` at the first step past `end`. SB3 counts that step but neither stores nor trains on it, and the
    caller sets the count back, so a segment ends exactly after the rollout that reaches `end`."""

    def __init__(self, end: int, on_steps: Callable[[int], object]) -> None:
        super().__init__()
        self.end, self.on_steps = end, on_steps

    def _on_step(self) -> bool:
        if self.model.num_timesteps > self.end:
            return False
        self.on_steps(self.training_env.num_envs)
        return True


def learn_segment(
    model: BaseAlgorithm, venv: VecEnv, seed: int, end: int, total: int, on_steps: Callable[[int], object]
) -> None:
    """RL from the model's count to `end` in fresh envs seeded with `seed`.

    Every segment starts the same way whether or not the process was restarted (new envs, every RNG reseeded, the
    model and replay buffer as the checkpoint holds them), so a killed run resumes to the same weights. `learn` is
    asked for the whole RL budget (`total`), so learning-rate and clip schedules run over the whole budget, not over
    one segment; `_Until` ends it at `end`."""
    model.set_env(venv)
    model.set_random_seed(seed)
    model.learn(total - model.num_timesteps, callback=_Until(end, on_steps), reset_num_timesteps=False)
    model.num_timesteps = min(model.num_timesteps, end)


def save_rl(model: BaseAlgorithm, folder: Path, name: str) -> None:
    """The model (optimizers and counters included) and, off-policy, its replay buffer, as SB3 saves them."""
    model.save(folder / f"{name}.zip")
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(folder / f"{name}-replay.pkl")


def restore_rl(algo: str, folder: Path, name: str, device: th.device | str = "cpu") -> BaseAlgorithm | None:
    """The model `save_rl` wrote in a checkpoint folder (its env comes with the next segment), on `device`, or None."""
    path = folder / f"{name}.zip"
    if not path.is_file():
        return None
    model = ALGOS[algo].load(path, device=device)
    replay = folder / f"{name}-replay.pkl"
    if isinstance(model, OffPolicyAlgorithm) and replay.is_file():
        model.load_replay_buffer(replay)
    return model
