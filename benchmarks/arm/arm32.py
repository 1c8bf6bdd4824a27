"""The 32-bit Raspberry Pi OS finding of the ARM check: whether the base install's wheels exist for
armv7l at all (asked of the package index each time, so the note stays true)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .guest import _pip_env


def arm32_note(cache: Path) -> dict[str, Any]:
    """The README's 32-bit Raspberry Pi OS path (tflite-runtime on armhf), checked against PyPI now."""
    found = {}
    for version in ("3.9", "3.11"):  # Pi OS Bullseye, Bookworm
        probe = cache / "armv7l-probe"
        shutil.rmtree(probe, ignore_errors=True)
        abi = "cp" + version.replace(".", "")
        for package in ("tflite-runtime", "numpy"):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    str(probe),
                    "--only-binary=:all:",
                    "--python-version",
                    version,
                    "--implementation",
                    "cp",
                    "--abi",
                    abi,
                    "--platform",
                    "linux_armv7l",
                    "--platform",
                    "manylinux2014_armv7l",
                    "--platform",
                    "manylinux_2_31_armv7l",
                    package,
                ],
                capture_output=True,
                text=True,
                env=_pip_env(cache),
            )
            found[f"{package} cp{version}"] = (
                sorted(p.name for p in probe.glob("*.whl") if p.name.startswith(package.replace("-", "_")))
                if result.returncode == 0
                else []
            )
        shutil.rmtree(probe, ignore_errors=True)
    return {
        "reached": False,
        "pypi_armv7l_wheels": found,
        "why": "not run: 32-bit Raspberry Pi OS Bookworm has Python 3.11, and PyPI has no armv7l wheel of "
        "tflite-runtime for it (2.13.0, the last, stops at CPython 3.10) nor any armv7l numpy wheel, "
        "so the documented 32-bit install cannot be reproduced from the registries reachable here",
    }
