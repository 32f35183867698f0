"""Every setting of every command, declared once: one frozen dataclass per command.

The attribute docstrings are the CLI help (`policykd.cli` generates the options from these fields), the defaults
are the only defaults, and `check` (`policykd.fields`) is the only validation of values, run when a settings object
is built, before any env is made. A field's `metadata` says how the CLI spells it (`flag`, a `negative` flag for
booleans, `positional`) and what it must satisfy (`rule`). Precedence for distill: these defaults < the env's
preset (`policykd/resources/envs/*.yaml`) < what the caller passes (flags or keyword arguments).

Adding an option is one field here: its type, default, docstring and rule.
"""

from policykd.settings.commands import (
    COMMANDS,
    EvaluateSettings,
    ExportSettings,
    PlotSettings,
    PruneSettings,
    RecordSettings,
    SweepSettings,
    TeacherAlgo,
    TrainTeacherSettings,
)
from policykd.settings.distill import (
    BetaSchedule,
    DistillSettings,
    Driver,
    KickSchedule,
    LrSchedule,
    RlStart,
    TeacherWeighting,
    Weighting,
)

__all__ = [
    "COMMANDS",
    "BetaSchedule",
    "DistillSettings",
    "Driver",
    "EvaluateSettings",
    "ExportSettings",
    "KickSchedule",
    "LrSchedule",
    "PlotSettings",
    "PruneSettings",
    "RecordSettings",
    "RlStart",
    "SweepSettings",
    "TeacherAlgo",
    "TeacherWeighting",
    "TrainTeacherSettings",
    "Weighting",
]
