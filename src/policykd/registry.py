"""Where users extend policykd: one table per extension point, from which the settings' choices, the CLI's help and
validation are derived.

An entry names its implementation as `"module:attribute"`, imported on first use, so that reading the tables (the
CLI's help, `import policykd`) loads neither torch nor SB3. Adding a loss, a teacher format, a student family, an
export format or a perturbation is one new module and one line in the table here (or, from the user's own code, one
`register(...)` call before the run):

    from policykd.registry import LOSSES
    LOSSES.register("huber_action", "mypkg.losses:huber_action", "Huber loss on the greedy action",
                    needs_distribution=False)
    policykd.distill("Pendulum-v1", loss="huber_action")

docs/cli.md ("Extending policykd") shows each table and a worked example.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from policykd.errors import PolicykdError

if TYPE_CHECKING:  # annotations only: reading the tables loads neither torch nor SB3
    from policykd.exporters.registry import Writer
    from policykd.losses import LossFn
    from policykd.robust.perturb import Effect
    from policykd.students.families import Family
    from policykd.teachers.formats import Format
    from policykd.views.stages import StageMaker

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered implementation: its name (the settings value), where it lives, one line of help, and facts the
    run needs before importing it (`meta`, e.g. whether a loss needs the teacher's full distribution)."""

    name: str
    target: str | T
    help: str
    meta: Mapping[str, object] = field(default_factory=dict)

    def load(self) -> T:
        """The implementation; a `"module:attribute"` target is imported here, on first use."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        try:
            return cast(T, getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError) as err:
            raise PolicykdError(
                f"{self.name!r} is registered as {self.target}, which cannot be imported: {err}"
            ) from None


class Registry(Mapping[str, Entry[T]]):
    """An ordered table of entries by name; `kind` names the extension point in messages ("loss", "export format")."""

    def __init__(self, kind: str, entries: tuple[Entry[T], ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        for entry in entries:
            self._add(entry)

    def __getitem__(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise PolicykdError(f"unknown {self.kind} {name!r}: choose from {', '.join(self._entries)}")
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def load(self, name: str) -> T:
        return self[name].load()

    def register(self, name: str, target: str | T, help: str, *, replace: bool = False, **meta: object) -> Entry[T]:
        """Add an entry (a user's own implementation); a name already taken is an error unless `replace=True`."""
        if name in self._entries and not replace:
            raise PolicykdError(f"{self.kind} {name!r} is already registered (pass replace=True to replace it)")
        entry = Entry(name, target, help, meta)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def help(self) -> str:
        """`name: help` lines, as docs/cli.md and `--help` show them."""
        return "\n".join(f"{e.name}: {e.help}" for e in self._entries.values())

    def _add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} registered twice")
        self._entries[entry.name] = entry


def _loss(name: str, function: str, help: str, *, soft: bool) -> Entry[LossFn]:
    return Entry(name, f"policykd.losses:{function}", help, {"needs_distribution": soft})


LOSSES: Registry[LossFn] = Registry(
    "loss",
    (
        _loss(
            "kl",
            "kl",
            "KL(teacher || student) at the temperature (Hinton et al.; Gaussian KL for continuous actions)",
            soft=True,
        ),
        _loss("reverse_kl", "reverse_kl", "KL(student || teacher): mode-seeking", soft=True),
        _loss("gaussian_kl", "gaussian_kl", "KL between Gaussian policies (continuous actions)", soft=True),
        _loss("ce", "hard_nll", "cross-entropy / NLL of the teacher's greedy action (behaviour cloning)", soft=False),
        _loss("nll", "hard_nll", "the same as ce", soft=False),
        _loss("mse_logits", "mse_logits", "MSE between logits (Ba & Caruana 2014)", soft=True),
        _loss("mse_q", "mse_q", "MSE between Q-values (DQN teacher and student)", soft=True),
        _loss(
            "mse_action",
            "mse_action",
            "MSE between greedy actions (deterministic teachers: TD3, DDPG, ARS)",
            soft=False,
        ),
    ),
)
"""Distillation losses: `(student, teacher, temperature, weights=None) -> scalar`, the batch mean (policykd.losses).
`needs_distribution`: the loss compares whole distributions, so action-only data cannot feed it."""

PERTURBATIONS: Registry[Effect] = Registry(
    "perturbation",
    (
        Entry(
            "obs-noise",
            "policykd.robust.perturb:obs_noise",
            "Gaussian noise on observations, SIZE x each dim's scale",
            {"augments": True},
        ),
        Entry(
            "sticky",
            "policykd.robust.perturb:sticky",
            "repeat the previous action with probability SIZE (<= 1)",
            {"augments": False, "at_most": 1.0},
        ),
        Entry(
            "action-noise",
            "policykd.robust.perturb:action_noise",
            "Gaussian noise on actions, SIZE x the range",
            {"augments": False},
        ),
        Entry(
            "fgsm",
            "policykd.robust.perturb:fgsm",
            "one-step adversarial observations of L-inf size SIZE",
            {"augments": True},
        ),
        Entry(
            "pgd",
            "policykd.robust.perturb:pgd",
            "10-step projected-gradient adversarial observations",
            {"augments": False},
        ),
    ),
)
"""Perturbations for `evaluate --perturb NAME=SIZE`; those with `augments` also serve `distill --augment`."""

STUDENT_FAMILIES: Registry[Family] = Registry(
    "student algorithm",
    (
        Entry("ppo", "policykd.students.families:ppo", "actor-critic, on-policy (any action space)"),
        Entry("a2c", "policykd.students.families:a2c", "actor-critic, on-policy (any action space)"),
        Entry("dqn", "policykd.students.families:dqn", "Q-network (discrete actions)"),
        Entry("sac", "policykd.students.families:sac", "squashed Gaussian actor + critics (continuous actions)"),
        Entry("td3", "policykd.students.families:td3", "deterministic actor + critics (continuous actions)"),
        Entry("recurrent-ppo", "policykd.students.families:recurrent_ppo", "LSTM student (sb3-contrib RecurrentPPO)"),
    ),
)
"""The SB3 algorithm a student is saved as (it loads with that class's `load` without policykd)."""

TEACHER_FORMATS: Registry[Format] = Registry(
    "teacher format",
    (
        Entry("zoo-spec", "policykd.teachers.formats:zoo_spec", "zoo:<algo>/<ENV>: an rl-zoo agent in --zoo-folder"),
        Entry(
            "shipped", "policykd.teachers.formats:shipped", "the name of an agent policykd ships (policykd teachers)"
        ),
        Entry("sb3-zip", "policykd.teachers.formats:sb3_zip", "an SB3 .zip (a vecnormalize.pkl beside it is used)"),
        Entry("card", "policykd.teachers.formats:card", "a folder with card.yaml (policykd train-teacher's output)"),
        Entry(
            "rl-zoo",
            "policykd.teachers.formats:zoo_folder",
            "an rl-zoo run folder (config.yml, env wrapper, VecNormalize)",
        ),
        Entry(
            "run",
            "policykd.teachers.formats:run_folder",
            "a distill run folder (its student.zip, VecNormalize and the teacher's env wrapper)",
        ),
        Entry("folder", "policykd.teachers.formats:folder", "a folder holding exactly one SB3 .zip"),
    ),
)
"""Teacher specs, tried in this order; the first format that claims a spec resolves it (policykd.teachers.formats).
Several specs make an ensemble; `--dataset` is a source of labelled steps, not a teacher format."""


EXPORTERS: Registry[Writer] = Registry(
    "format",
    (
        Entry(
            "onnx",
            "policykd.exporters.to_onnx:write_onnx",
            "any student: ONNX opset 17 for onnxruntime",
            {
                "filename": "student.onnx",
                "int8_writer": "policykd.exporters.int8:write_int8_onnx",
                "int8_filename": "student.int8.onnx",
            },
        ),
        Entry(
            "c",
            "policykd.exporters.to_c:write_c",
            "MLP students: policy.c and policy.h, C99 and libm only",
            {
                "filename": "policy.c",
                "int8_writer": "policykd.exporters.to_c:write_c_int8",
                "int8_filename": "policy_int8.c",
            },
        ),
    ),
)
"""Export formats: `write(source, out) -> Path` (`Writer`); `meta`: the default `filename` (its suffix is the one a
file given as `out` must have), the `int8_writer` and its `int8_filename` (absent: the format has no int8 export)."""


VIEWS: Registry[StageMaker] = Registry(
    "student view",
    (
        Entry(
            "mask", "policykd.views.stages:mask", "mask=IDX,... or a named group (mask=velocities): hide those entries"
        ),
        Entry(
            "noise",
            "policykd.views.stages:noise",
            "noise=SIGMA: Gaussian sensor noise in the observation's units, seeded",
        ),
        Entry("delay", "policykd.views.stages:delay", "delay=K: the observation from K steps ago (sensor latency)"),
        Entry(
            "history", "policykd.views.stages:history", "history=K: the last K observations side by side, oldest first"
        ),
        Entry("ram", "policykd.views.stages:ram", "ram: Atari's 128-byte console RAM instead of the frames"),
    ),
)
"""Student views (`--student-obs NAME=VALUE`, applied in order): `make(spec, value, probe) -> Stage` (policykd.views.stages).
A spec `module:function` is a user's own `function(obs, info) -> array`, without an entry here."""


def augmentations() -> tuple[str, ...]:
    return tuple(name for name, entry in PERTURBATIONS.items() if entry.meta.get("augments"))
