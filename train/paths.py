"""Where runs live: never relative to wherever the user happens to stand."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EDGE_RUNS_DIR"


def project_root() -> Path | None:
    """The source checkout this package runs from, if it is one."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_runs_dir() -> Path:
    """``$EDGE_RUNS_DIR``, else ``runs/`` in the checkout, else ``./runs``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    root = project_root()
    return (root / "runs") if root else Path.cwd() / "runs"


def default_reports_dir() -> Path:
    root = project_root()
    return (root / "reports") if root else Path.cwd() / "reports"


def resolve_folder(folder: str | Path) -> Path:
    """A dataset folder as the user gave it, else relative to the checkout.

    Registry recipes and committed run configs name the repository's own data relative to the
    checkout (``data/clothing-small``), so they work wherever the checkout lives and whatever the
    current folder is.
    """
    path = Path(folder).expanduser()
    if path.is_absolute() or path.exists():
        return path
    root = project_root()
    return root / path if root and (root / path).exists() else path
