"""Export a distilled student to files that act without Python or SB3 (ONNX, self-contained C, ...), each doing
everything SB3's `predict(deterministic=True)` does (normalisation, image scaling, post-processing).

The formats are the table in `policykd.exporters.registry`; `policykd.export(...)` (`policykd.api`) is the call.
This package is named apart from that function, so importing it never rebinds `policykd.export`; it imports
nothing above itself (no `policykd.api`, `policykd.cli` or `policykd.sweeps`).
"""

from __future__ import annotations

from policykd.exporters.registry import EXPORTERS, Exporter, Writer, export_formats, register_exporter

__all__ = ["EXPORTERS", "Exporter", "Writer", "export_formats", "register_exporter"]
