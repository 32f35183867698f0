"""Export a distilled student to files that act without Python or SB3: ONNX and self-contained C,
each doing everything SB3's `predict(deterministic=True)` does (normalisation, image scaling, post-processing)."""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """`policykd.export(...)` is the library call (`policykd.api.export`) even after this package is imported:
    importing a submodule rebinds the parent's `export` attribute to this package, so the package calls through."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from policykd.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
