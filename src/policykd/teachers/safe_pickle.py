"""Read pickles from strangers without running their code.

rl-zoo's VecNormalize files were pickled with the legacy `gym` package, and a pickle
from the internet can execute anything on load. This unpickler admits only an
allow-list: numpy arrays and RNG states, SB3's RunningMeanStd, and stand-ins for
gym/gymnasium spaces and SB3 wrappers that just keep their attributes. Spaces are
rebuilt from the live env afterwards, so no legacy class is ever needed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from stable_baselines3.common.running_mean_std import RunningMeanStd

from policykd.errors import PolicykdError


class Stub:
    """Keeps a pickled object's attributes without running any of its class's code."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    # a seeded space's Generator, as SB3 2.x VecNormalize pickles carry it (numpy >= 1.25)
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("collections", "OrderedDict"),
    ("builtins", "slice"),
}
_STUB_PREFIXES = ("gym.spaces.", "gymnasium.spaces.", "stable_baselines3.common.vec_env.")


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY:
            module = module.replace("numpy.core.", "numpy._core.")
            return super().find_class(module, name)
        if (module, name) == ("stable_baselines3.common.running_mean_std", "RunningMeanStd"):
            return RunningMeanStd
        if module.startswith(_STUB_PREFIXES):
            return Stub
        raise pickle.UnpicklingError(f"{module}.{name} is not on policykd's allow-list")


def safe_load(path: Path) -> Any:
    """Unpickle `path` with the allow-list; a refused or broken pickle is a PolicykdError."""
    try:
        with open(path, "rb") as handle:
            return SafeUnpickler(handle).load()
    except FileNotFoundError:
        raise PolicykdError(f"file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as err:
        raise PolicykdError(f"{path} cannot be loaded safely: {err}") from None
