"""A device install gets the runtime alone: no generic top-level train/convert/benchmarks modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_wheel_holds_the_runtime_and_no_generic_top_level_modules(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("edge_classify-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"edge_runtime", "edge_common"}, top
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "edge-classify = edge_runtime.cli:main" in entry_points
    assert "edge-train = edge_common.tooling:train" in entry_points


def test_tooling_launcher_says_how_to_get_the_tooling_when_it_is_absent(tmp_path):
    # A device: the runtime installed, no checkout on the path. Copy the two packages alone.
    import shutil

    for package in ("edge_common", "edge_runtime"):
        shutil.copytree(ROOT / package, tmp_path / package)
    code = (
        "import sys; sys.path = [p for p in sys.path if 'work' not in p or p == sys.argv[1]]; "
        "from edge_common.tooling import train; raise SystemExit(train())"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code.replace("'work' not in p", f"{str(ROOT)!r} not in p"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "runs from a checkout" in result.stderr and "Traceback" not in result.stderr
