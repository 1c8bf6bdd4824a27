"""Where runs live: never relative to wherever the user happens to stand."""

from __future__ import annotations

from pathlib import Path

# The runs folder's rule is shared with the runtime (the shipped feature extractor lives there).
from edge_common.paths import ENV_VAR, default_runs_dir, project_root  # noqa: E402

__all__ = ["ENV_VAR", "default_runs_dir", "project_root", "default_reports_dir", "resolve_folder"]


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


def display_path(path: Path) -> str:
    """Relative to the checkout when inside it, so committed metrics name no machine's folders."""
    root = project_root()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if root and resolved.is_relative_to(root) else str(resolved)
