"""policykd: distil a strong, heavy RL policy into a small, fast Stable-Baselines3 student."""

from policykd.config import DistillConfig
from policykd.run.loop import Distiller, distill
from policykd.errors import PolicykdError
from policykd.teachers import load_teacher, load_teachers

__all__ = ["distill", "Distiller", "DistillConfig", "load_teacher", "load_teachers", "PolicykdError"]
__version__ = "0.1.0"
