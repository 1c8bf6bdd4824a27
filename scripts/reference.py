"""The command reference (docs/commands.md), generated from the commands' own parsers.

Every option is a field of a config dataclass and every command builds its parser from those
fields, so the reference is their ``--help`` texts, one section per command; a test fails when the
committed file is stale. Regenerate with ``python scripts/reference.py``. It knows every command, so
it lives with the tooling, not in the installed ground (``edge_common`` imports none of the packages).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the checkout's packages
    sys.path.insert(0, str(ROOT))

# (command as typed, module, parser builder)
COMMANDS = (
    ("python -m train", "train.cli", "build_parser"),
    ("python -m train.refit_unknown", "train.refit_unknown", "build_parser"),
    ("python -m convert", "convert.cli", "build_parser"),
    ("python -m convert.features", "convert.features", "build_parser"),
    ("python -m edge_runtime", "edge_runtime.cli", "build_parser"),
    ("python -m edge_runtime inspect", "edge_runtime.cli", "build_inspect_parser"),
    ("python -m edge_runtime doctor", "edge_runtime.doctor", "build_parser"),
    ("python -m edge_runtime teach", "edge_runtime.teach.command", "build_parser"),
    ("python -m benchmarks", "benchmarks.cli", "build_parser"),
    ("python -m benchmarks.camera", "benchmarks.camera", "build_parser"),
    ("python -m benchmarks.cameras", "benchmarks.cameras", "build_parser"),
    ("python -m benchmarks.ipcamera", "benchmarks.ipcamera", "build_parser"),
    ("python -m benchmarks.paired", "benchmarks.paired", "build_parser"),
    ("python -m benchmarks.teach", "benchmarks.teach", "build_parser"),
    ("python -m benchmarks.teach_panel", "benchmarks.teach_panel", "build_parser"),
    ("python -m benchmarks.arm", "benchmarks.arm", "build_parser"),
    ("python -m benchmarks.demo", "benchmarks.demo", "build_parser"),
)
WIDTH = "100"  # --help wraps at the terminal's width; the reference is rendered at a fixed one


def render() -> str:
    """The whole reference as Markdown."""
    saved_argv0, saved_columns = sys.argv[0], os.environ.get("COLUMNS")
    sys.argv[0], os.environ["COLUMNS"] = "reference.py", WIDTH  # usage lines name the module, not a launcher
    try:
        sections = [
            "# Command reference",
            "",
            "Generated from the commands' parsers (`python scripts/reference.py`); every option is a "
            "field of its command's config dataclass, with its range in brackets.",
            "",
        ]
        for command, module, builder in COMMANDS:
            parser = getattr(importlib.import_module(module), builder)()
            sections += [f"## `{command}`", "", "```text", parser.format_help().rstrip(), "```", ""]
        return "\n".join(sections)
    finally:
        sys.argv[0] = saved_argv0
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns


def main() -> int:
    from edge_common.files import atomic_write_text

    target = ROOT / "docs" / "commands.md"
    atomic_write_text(target, render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
