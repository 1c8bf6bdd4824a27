"""Where runs live, for every package: never relative to wherever the user happens to stand."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EDGE_RUNS_DIR"


def project_root() -> Path | None:
    """The source checkout this package runs from, if it is one (an installed wheel is not)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_runs_dir() -> Path:
    """``$EDGE_RUNS_DIR``, else ``runs/`` in the checkout, else ``./runs``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    root = project_root()
    return (root / "runs") if root else Path.cwd() / "runs"
