"""`python -m benchmarks.arm` (`make check-arm`): the device half on 64-bit ARM, under emulation, against x86.

A Debian bookworm arm64 userland (what Raspberry Pi OS 64-bit is built on) is unpacked from Debian's
own packages into a cached folder and run with ``qemu-aarch64-static -L ROOT``. The project's base
install (the wheel, no TensorFlow) is resolved and installed *by pip inside the guest* from aarch64
wheels downloaded on the host. Then the shipped deploy files are run by ``python -m edge_runtime``'s
own ``main`` on a short video and a folder of held-out photos, on x86 here and in the guest for each
emulated CPU model, and every frame's top-1 and probabilities are compared. The guest also runs
``python -m benchmarks --deploy-dir`` in device mode; its times are emulation times, labelled so.

Why it works under user-mode emulation: qemu-user shows the guest the x86 host's /proc/cpuinfo,
where the cpuinfo library inside LiteRT and ONNX Runtime finds no ARM processor and crashes. ``-L
ROOT`` also redirects the guest's reads of /proc/cpuinfo to ROOT/proc/cpuinfo, so an ARM record per
CPU, matching the emulated model's features, is written there.

Everything lives under the cache folder (default ``.cache/arm`` in the checkout, git-ignored); the
host gets nothing but ``qemu-user-static`` from apt when it is missing and the user is root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_common.cli import ArgumentParser, add_options, config_from_args, option, run_reporting_errors, setup_logging
from edge_common.errors import EdgeError
from edge_common.files import atomic_write_text, dump_json

log = logging.getLogger("edge_classify.arm")
ROOT = Path(__file__).resolve().parent.parent

# Debian bookworm arm64: python3.11 and the C libraries it and the manylinux wheels link against
# (apt-cache depends --recurse python3.11, less dpkg/perl/tar/mime tooling, plus libstdc++6/libgomp1).
GUEST_PACKAGES = (
    "gcc-12-base", "libbz2-1.0", "libc6", "libcom-err2", "libcrypt1", "libdb5.3", "libexpat1", "libffi8",
    "libgcc-s1", "libgdbm6", "libgssapi-krb5-2", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0",
    "liblzma5", "libncursesw6", "libnsl2", "libpython3.11-minimal", "libpython3.11-stdlib", "libreadline8",
    "libsqlite3-0", "libssl3", "libtinfo6", "libtirpc-common", "libtirpc3", "libuuid1", "python3.11",
    "python3.11-minimal", "zlib1g", "libstdc++6", "libgomp1",
)
DEBIAN = ("http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian bookworm-updates main",
          "http://deb.debian.org/debian-security bookworm-security main")
AARCH64_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
                     "manylinux_2_28_aarch64")

# /proc/cpuinfo records: (implementer, part, Features) as the kernel prints them for each core.
_A72_FEATURES = "fp asimd evtstrm crc32 cpuid"
_A76_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                 "asimddp")
CPUS = {
    "cortex-a53": ("0x41", "0xd03", _A72_FEATURES),  # Pi 3, Pi Zero 2
    "cortex-a72": ("0x41", "0xd08", _A72_FEATURES),  # Pi 4: no dot product
    "cortex-a76": ("0x41", "0xd0b", _A76_FEATURES),  # Pi 5: dot product (asimddp)
    "neoverse-n1": ("0x41", "0xd0c", _A76_FEATURES),
}
BENCH_FORMATS = ("tflite_float32", "tflite_int8", "onnx_int8")
FILES = ("model_float32.tflite", "model_int8.tflite", "model_float32.onnx", "model_int8.onnx")
# Same top-1 on every frame, and probabilities within these (the JSONL keeps 5 decimals): float kernels
# may differ by summation order and FMA; an int8 output may differ by one step of its 1/256 scale.
TOLERANCE = {"float32": 1e-4, "int8": 1 / 256 + 1e-5}


@dataclass
class ArmConfig:
    """Options of ``python -m benchmarks.arm``."""

    cpus: str = option("cortex-a72,cortex-a76", "emulated CPU models, comma-separated (Pi 4: cortex-a72, Pi 5: "
                                                "cortex-a76; also cortex-a53, neoverse-n1)")
    models: str = option("clothes_lite0,edge_cnn", "shipped models (runs/<MODEL>/deploy/) whose files are compared")
    frames: int = option(6, "frames in the test video (one held-out photo per frame)")
    photos: int = option(6, "held-out photos in the test folder")
    benchmark: bool = option(True, "skip the device-mode benchmark in the guest", flag="--no-benchmark")
    cache_dir: str | None = option(help="guest root, wheels and inputs (default: .cache/arm in the checkout)")
    reports_dir: str | None = option(help="where arm.json goes (default: reports/ in the checkout)")
    runs_dir: str | None = option(help="where the shipped runs are (default: runs/ in the checkout)")

    def cpu_list(self) -> list[str]:
        names = [name.strip() for name in self.cpus.split(",") if name.strip()]
        unknown = [name for name in names if name not in CPUS]
        if not names or unknown:
            raise EdgeError(f"--cpus: unknown CPU model(s) {', '.join(unknown) or '(none)'}; choose from "
                            f"{', '.join(CPUS)}")
        return names


class _Steps:
    """Wall time of each step, for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Any) -> Any:
        started = time.perf_counter()
        log.info("%s ...", name)
        try:
            return work()
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)
            log.info("%s: %.1f s", name, self.seconds[name])


def run(config: ArmConfig) -> dict[str, Any]:
    """Build or reuse the guest, run everything on x86 and in the guest, compare, write reports/arm.json."""
    cpus = config.cpu_list()
    cache = Path(config.cache_dir).expanduser() if config.cache_dir else ROOT / ".cache" / "arm"
    reports = Path(config.reports_dir).expanduser() if config.reports_dir else ROOT / "reports"
    runs = Path(config.runs_dir).expanduser() if config.runs_dir else ROOT / "runs"
    files = _deploy_files(runs, [name.strip() for name in config.models.split(",") if name.strip()])
    qemu = _qemu()
    cache.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    started = time.perf_counter()
    guest_root = steps.run("guest root (Debian bookworm arm64)", lambda: _guest_root(cache))
    wheels = steps.run("aarch64 wheels", lambda: _wheels(cache))
    site = steps.run("base install inside the guest (pip)", lambda: _guest_install(cache, guest_root, qemu, wheels))
    inputs = steps.run("inputs (video and photos)", lambda: _inputs(cache, config.frames, config.photos))
    jobs = [{"file": str(path), "source": str(source), "name": f"{path.parent.parent.name}/{path.name}/{kind}"}
            for path in files for kind, source in inputs.items()]
    x86 = steps.run("x86 runs", lambda: _run_jobs([sys.executable], jobs, cache / "out" / "x86",
                                                  {"PYTHONPATH": str(ROOT)}))
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}  # the installed wheel first, the checkout for this driver
    pythons = {cpu: _guest_python(cache, _cpu_root(guest_root, cpu), qemu, cpu) for cpu in cpus}
    guests = steps.run(f"guest runs ({', '.join(cpus)}, side by side)", lambda: _in_parallel(
        {cpu: lambda cpu=cpu: _run_jobs([str(pythons[cpu])], jobs, cache / "out" / cpu, env, cache / "out" / "x86")
         for cpu in cpus}))
    info = _guest_info(pythons[cpus[-1]], site)
    bench = None
    if config.benchmark:
        edge = next((path.parent for path in files if path.parent.parent.name == "edge_cnn"), files[0].parent)
        bench = steps.run(f"device-mode benchmark in the guest ({cpus[-1]})",
                          lambda: _guest_benchmark(pythons[cpus[-1]], site, edge, cache / "benchmark"))
    entries = [_compare(job, x86[job["name"]], guests[cpu][job["name"]], cpu) for cpu in cpus for job in jobs]
    report = {
        "ok": all(entry["ok"] for entry in entries) and (bench is None or bench["ok"]),
        **info,
        "emulation": f"qemu-user {_qemu_version(qemu)} (-cpu {', '.join(cpus)}); times are emulation times, "
                     "never comparable with hardware",
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "tolerance": {"top1": "every frame identical", "max_prob_diff": TOLERANCE},
        "end_to_end_top1_identical": all(not entry["mismatches"] for entry in entries),
        "findings": _findings(entries),
        "files": entries,
        "benchmark": bench,
        "not_covered": NOT_COVERED,
        "arm32": _arm32_note(cache),
        "steps_s": {**steps.seconds, "total": round(time.perf_counter() - started, 1)},
    }
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_text(reports / "arm.json", dump_json(report))
    return report


NOT_COVERED = ("real boards (Raspberry Pi 4/5, Jetson): only their CPU instruction sets are emulated; cameras, "
               "Picamera2, V4L2 and GStreamer capture; Jetson's CUDA/TensorRT execution providers; any timing")


# --- the host's tools --------------------------------------------------------------------------

def _qemu() -> str:
    """qemu-aarch64-static, installed from apt when missing and the user is root."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EdgeError("check-arm needs qemu-user-static: run `sudo apt-get install qemu-user-static` (nothing was "
                        "run)")
    log.info("installing qemu-user-static from Debian")
    result = subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static"], capture_output=True, text=True,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("qemu-aarch64-static")
    if result.returncode != 0 or not found:
        raise EdgeError(f"apt-get install qemu-user-static failed: {_tail(result.stderr)}")
    return found


def _qemu_version(qemu: str) -> str:
    first = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()
    return first[0].split("version")[-1].strip().split()[0] if first else "unknown"


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _check(command: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise EdgeError(f"{what} failed (exit {result.returncode}): {_tail(result.stderr or result.stdout)}")
    return result


# --- the guest ---------------------------------------------------------------------------------

def _guest_root(cache: Path) -> Path:
    """Debian bookworm arm64's python3.11 and libraries, unpacked (not installed) from Debian's packages
    with a private apt state, so the host's apt configuration is never touched."""
    root = cache / "root-arm64"
    stamp = hashlib.sha256(" ".join(GUEST_PACKAGES).encode()).hexdigest()
    if (root / ".complete").is_file() and (root / ".complete").read_text().strip() == stamp:
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise EdgeError(f"check-arm needs {tool} (Debian/Ubuntu) to unpack the arm64 guest")
    apt = cache / "apt"
    for folder in ("state/lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d", "debs"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "etc" / "sources.list").write_text("".join(f"deb [arch=arm64 signed-by={keyring}] {line}\n"
                                                      for line in DEBIAN))
    options = [f"-oDir::State={apt / 'state'}", f"-oDir::State::status={apt / 'status'}",
               f"-oDir::Cache={apt / 'cache'}", f"-oDir::Etc::sourcelist={apt / 'etc' / 'sources.list'}",
               "-oDir::Etc::sourceparts=-", f"-oDir::Etc::preferencesparts={apt / 'etc' / 'preferences.d'}",
               f"-oDir::Etc::parts={apt / 'etc' / 'apt.conf.d'}", "-oAPT::Architecture=arm64",
               "-oAPT::Architectures::=arm64", "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root"]
    _check(["apt-get", *options, "update"], "apt-get update (Debian bookworm arm64 package lists)")
    debs = apt / "debs"
    for old in debs.glob("*.deb"):
        old.unlink()
    _check(["apt-get", *options, "download", *GUEST_PACKAGES], "apt-get download (arm64 packages)", cwd=debs)
    building = cache / "root-arm64.partial"
    shutil.rmtree(building, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _check(["dpkg-deb", "-x", str(deb), str(building)], f"unpacking {deb.name}")
    (building / "proc").mkdir(exist_ok=True)
    (building / ".complete").write_text(stamp + "\n")
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    return root


def _write_cpuinfo(root: Path, cpu: str, cores: int = 4) -> None:
    implementer, part, features = CPUS[cpu]
    record = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: " + features + "\nCPU implementer\t: " + implementer +
              "\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: " + part + "\nCPU revision\t: 3\n\n")
    (root / "proc").mkdir(exist_ok=True)
    # A new file, never written through a hard link shared with another CPU model's root.
    atomic_write_text(root / "proc" / "cpuinfo", "".join(record.format(n=n) for n in range(cores)))


def _cpu_root(root: Path, cpu: str) -> Path:
    """A root of its own per CPU model (hard links: no copy of the files), for its own /proc/cpuinfo,
    so the CPU models run side by side."""
    copy = root.parent / f"{root.name}-{cpu}"
    if not (copy / ".complete").is_file() or (copy / ".complete").read_text() != (root / ".complete").read_text():
        shutil.rmtree(copy, ignore_errors=True)
        _check(["cp", "-al", str(root), str(copy)], f"linking the guest root for {cpu}")
    _write_cpuinfo(copy, cpu)
    return copy


def _in_parallel(work: dict[str, Any]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = {name: pool.submit(job) for name, job in work.items()}
        return {name: future.result() for name, future in futures.items()}


def _guest_python(cache: Path, root: Path, qemu: str, cpu: str | None) -> Path:
    """A host-side launcher for the guest's python3.11 in ``root``, on ``cpu`` (None: qemu's default,
    for pip, which reads no CPU features). The guest sees the launcher as sys.executable (qemu's -0),
    so the guest's own child processes start emulated too."""
    launcher = cache / "bin" / f"python3-{cpu or 'install'}"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    text = (f"#!/bin/sh\n# the guest's python3.11 (Debian bookworm arm64) on an emulated {cpu or 'default CPU'}\n"
            f"exec {qemu} -L {root}{f' -cpu {cpu}' if cpu else ''} -0 {launcher} {root}/usr/bin/python3.11 \"$@\"\n")
    if not launcher.is_file() or launcher.read_text() != text:
        atomic_write_text(launcher, text)
        launcher.chmod(0o755)
    return launcher


def _pip_env(cache: Path) -> dict[str, str]:
    """pip's cache under the check's own folder, not the user's."""
    return {**os.environ, "PIP_CACHE_DIR": str(cache / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _wheels(cache: Path) -> Path:
    """The project's wheel, built now (it is what is tested), and its dependencies as aarch64 wheels.
    Markers are evaluated inside the guest, by the guest's pip; this only fills the local index."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("edge_classify-*.whl"):
        old.unlink()
    env = _pip_env(cache)
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
           "building the project's wheel", env=env)
    wheel = next(wheels.glob("edge_classify-*.whl"))
    platforms = [arg for name in AARCH64_PLATFORMS for arg in ("--platform", name)]
    _check([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "--only-binary=:all:",
            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms, str(wheel), "pip"],
           "pip download of the aarch64 wheels", env=env)
    return wheels


def _guest_install(cache: Path, root: Path, qemu: str, wheels: Path) -> Path:
    """pip, run inside the guest, installs the wheel's base install offline into a folder of its own."""
    wheel = next(wheels.glob("edge_classify-*.whl"))
    site = cache / "site-arm64"
    stamp = _wheel_digest(wheel)
    if (site / ".complete").is_file() and (site / ".complete").read_text().strip() == stamp:
        return site
    pip = sorted(wheels.glob("pip-*.whl"))[-1]
    partial = cache / "site-arm64.partial"
    shutil.rmtree(partial, ignore_errors=True)
    python = _guest_python(cache, root, qemu, None)
    _check([str(python), f"{pip}/pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--target",
            str(partial), "--no-compile", "--disable-pip-version-check", "--root-user-action=ignore", str(wheel)],
           "pip install inside the guest")
    (partial / ".complete").write_text(stamp + "\n")
    shutil.rmtree(site, ignore_errors=True)
    partial.rename(site)
    return site


def _wheel_digest(wheel: Path) -> str:
    """What the wheel holds (names and CRCs), not its zip bytes: a rebuild stamps new times into them."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        members = sorted(f"{info.filename}:{info.CRC:08x}" for info in archive.infolist())
    return hashlib.sha256("\n".join(members).encode()).hexdigest()


def _guest_info(python: Path, site: Path) -> dict[str, Any]:
    code = ("import json, platform, importlib.metadata as m, edge_runtime\n"
            "names = ('edge-classify', 'numpy', 'opencv-python-headless', 'ai-edge-litert', 'onnxruntime')\n"
            "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),\n"
            "  'packages': {n: m.version(n) for n in names}, 'edge_runtime_from': edge_runtime.__file__}))\n")
    result = _check([str(python), "-c", code], "reading the guest's versions", cwd=site.parent,
                    env={**os.environ, "PYTHONPATH": str(site)})
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["edge_runtime_from"].startswith(str(site)):
        raise EdgeError(f"the guest imported edge_runtime from {info['edge_runtime_from']}, not from its install")
    return info


# --- inputs, runs and the comparison -----------------------------------------------------------

def _deploy_files(runs: Path, names: list[str]) -> list[Path]:
    files = []
    for name in names:
        deploy = runs / name / "deploy"
        missing = [file for file in FILES if not (deploy / file).is_file()]
        if missing:
            raise EdgeError(f"{deploy}: {', '.join(missing)} missing; run `python -m convert {name}` first")
        files.extend(deploy / file for file in FILES)
    return files


def _inputs(cache: Path, frames: int, photos: int) -> dict[str, Path]:
    """A short 640x480 video and a folder of photos, from the repository's held-out photos, every
    class in turn (rebuilt only when the counts change)."""
    import numpy as np

    from edge_common.files import read_json

    folder = cache / "inputs"
    wanted = {"frames": frames, "photos": photos}
    video, stills = folder / "clip.mp4", folder / "photos"
    if read_json(folder / "inputs.json") == wanted and video.is_file() and stills.is_dir():
        return {"video": video, "photos": stills}
    from train.datasets import folder as folder_mod

    from .pipeline import make_photo_video

    held_out = folder_mod.open_folder(ROOT / "data" / "clothing-small" / "test").interleaved(frames + photos)
    shutil.rmtree(folder, ignore_errors=True)
    stills.mkdir(parents=True)
    make_photo_video(video, [path for path, _ in held_out[:frames]], np.zeros(frames, np.int64), hold=1)
    for path, _ in held_out[frames:]:
        shutil.copyfile(path, stills / path.name)
    atomic_write_text(folder / "inputs.json", dump_json(wanted))
    return {"video": video, "photos": stills}


def _run_jobs(python: list[str], jobs: list[dict[str, str]], out: Path, env: dict[str, str],
              reference: Path | None = None) -> dict[str, Any]:
    """Every job in one process (``--run-jobs``): the runtime's own command-line ``main`` per file and
    source, so start-up is paid once, which matters at emulation speed. ``reference``: the x86 run's
    folder, whose input tensors the model is also run on."""
    out.mkdir(parents=True, exist_ok=True)
    plan = out / "jobs.json"
    planned = []
    for job in jobs:
        stem = job["name"].replace("/", "__")
        planned.append({**job, "jsonl": str(out / f"{stem}.jsonl"), "tensors": str(out / f"{stem}.tensors.npy"),
                        "probabilities": str(out / f"{stem}.probabilities.npy"),
                        "reference_tensors": str(reference / f"{stem}.tensors.npy") if reference else None})
    atomic_write_text(plan, dump_json(planned))
    result = subprocess.run([*python, "-m", "benchmarks.arm", "--run-jobs", str(plan)], capture_output=True,
                            text=True, cwd=out, env={**os.environ, **env})
    if result.returncode != 0:
        raise EdgeError(f"{python[0]}: the runs failed (exit {result.returncode}): {_tail(result.stderr)}")
    return {job["name"]: job for job in json.loads((out / "results.json").read_text())}


def run_jobs(plan: Path) -> int:
    """The driver both sides run, per job:

    1. ``edge_runtime.cli.main`` on the file and source (the whole pipeline), JSONL out, timed;
    2. the exact input tensors that pipeline fed the model, saved (decoding and resizing are the
       platform's own: libjpeg-turbo, FFmpeg and OpenCV's resize have per-architecture SIMD code);
    3. the model alone on the x86 run's tensors, so kernels are compared on identical inputs.
    """
    import numpy as np

    from edge_runtime import Classifier
    from edge_runtime.cli import main as runtime
    from edge_runtime.sources import open_source

    jobs = json.loads(plan.read_text())
    for job in jobs:
        started = time.perf_counter()
        job["exit_code"] = runtime(["--model", job["file"], "--source", job["source"], "--headless", "--top-k",
                                    "1000", "--jsonl", job["jsonl"]])
        job["wall_s"] = round(time.perf_counter() - started, 2)
        with Classifier.open(job["file"]) as classifier:
            source, tensors = open_source(job["source"]), []
            while True:
                ok, frame = source.read()
                if not ok:
                    break
                if frame is not None:
                    tensors.append(classifier.input_tensor(frame))
            source.close()
            np.save(job["tensors"], np.concatenate(tensors))
            reference = np.load(job.get("reference_tensors") or job["tensors"])
            np.save(job["probabilities"], np.stack([classifier.infer(t[None]) for t in reference]))
    atomic_write_text(plan.parent / "results.json", dump_json(jobs))
    return 0


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _compare(job: dict[str, str], host: dict[str, Any], guest: dict[str, Any], cpu: str) -> dict[str, Any]:
    """One file on one source on one CPU model: frames, top-1 agreement and the largest probability
    difference against the x86 run of the same file."""
    here, there = _read_jsonl(host["jsonl"]), _read_jsonl(guest["jsonl"])
    pairs = list(zip(here, there))
    agree = sum(a["top"][0][0] == b["top"][0][0] for a, b in pairs)
    diff = 0.0
    for a, b in pairs:
        probs_a, probs_b = dict(map(tuple, a["top"])), dict(map(tuple, b["top"]))
        diff = max([diff, *(abs(probs_a[k] - probs_b.get(k, 0.0)) for k in probs_a)])
    import numpy as np

    precision = "int8" if "int8" in Path(job["file"]).name else "float32"
    frames = len(there)
    inputs_here, inputs_there = np.load(host["tensors"]), np.load(guest["tensors"])
    same_shape = inputs_here.shape == inputs_there.shape
    input_diff = float(np.max(np.abs(inputs_here.astype(np.float64) - inputs_there))) if same_shape else float("inf")
    kernels_here, kernels_there = np.load(host["probabilities"]), np.load(guest["probabilities"])
    kernel_diff = float(np.max(np.abs(kernels_here - kernels_there)))
    kernel_top1 = float(np.mean(np.argmax(kernels_here, axis=1) == np.argmax(kernels_there, axis=1)))
    entry = {"file": str(Path(job["file"]).relative_to(ROOT)) if Path(job["file"]).is_relative_to(ROOT)
             else job["file"], "source": job["name"].rsplit("/", 1)[1], "cpu": cpu, "frames": frames,
             "x86_frames": len(here), "top1_agreement": agree / frames if frames else 0.0,
             "max_prob_diff": round(diff, 6),
             # The same comparison with the model fed the x86 run's exact input tensors: the kernels alone.
             "identical_input": {"top1_agreement": kernel_top1, "max_prob_diff": round(kernel_diff, 7)},
             # How far the guest's own decoded and resized input was from x86's (model input units).
             "input_max_diff": input_diff,
             "exit_code": guest["exit_code"], "guest_wall_s": guest["wall_s"], "x86_wall_s": host["wall_s"]}
    entry["mismatches"] = [{"frame": i, "x86": a["top"][:2], "guest": b["top"][:2]}
                           for i, (a, b) in enumerate(pairs) if a["top"][0][0] != b["top"][0][0]]
    kernels_agree = kernel_top1 == 1.0 and kernel_diff <= TOLERANCE[precision]
    # A top-1 that differs end to end while the same tensors give the same answer on both sides comes
    # from the input: the guest decoded and resized the frame differently (input_max_diff > 0).
    entry["explained_by_input"] = bool(entry["mismatches"]) and kernels_agree and input_diff > 0
    # Pass: the runtime and interpreters agree on identical inputs, and every frame's top-1 matches end to
    # end or its difference is explained by the decoded input (reported as a finding, never dropped).
    entry["ok"] = (guest["exit_code"] == 0 and host["exit_code"] == 0 and frames > 0 and frames == len(here)
                   and kernels_agree and (agree == frames or entry["explained_by_input"]))
    return entry


def _findings(entries: list[dict[str, Any]]) -> list[str]:
    """Every end-to-end top-1 difference, in words."""
    out = []
    for entry in entries:
        for miss in entry["mismatches"]:
            (x86_label, x86_p), second = miss["x86"][0], miss["x86"][1] if len(miss["x86"]) > 1 else ("-", 0.0)
            guest_label, guest_p = miss["guest"][0]
            cause = (f"the same input tensors give identical answers on both, and the guest's decoded input differs "
                     f"by up to {entry['input_max_diff']:g} levels" if entry["explained_by_input"] else "UNEXPLAINED")
            out.append(f"{entry['cpu']} {entry['file']} {entry['source']} frame {miss['frame']}: x86 {x86_label} "
                       f"{x86_p:.3f} (next {second[0]} {second[1]:.3f}), guest {guest_label} {guest_p:.3f}; {cause}")
    return out


def _guest_benchmark(python: Path, site: Path, deploy: Path, out: Path) -> dict[str, Any]:
    """``python -m benchmarks --deploy-dir`` in device mode inside the guest (quick settings)."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Three formats (float32, int8, ONNX int8) keep it to about two minutes at emulation speed.
    result = subprocess.run([str(python), "-m", "benchmarks", "--deploy-dir", str(deploy), "--quick", "--threads", "1",
                             "--no-e2e", "--formats", *BENCH_FORMATS, "--reports-dir", str(out),
                             "--data-dir", _fashion_dir()],
                            capture_output=True, text=True, cwd=out,
                            env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"})
    wall = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        return {"ok": False, "error": _tail(result.stderr), "wall_s": wall}
    report = json.loads((out / "benchmark.json").read_text())
    rows = [{"format": row["format"], "accuracy": row.get("accuracy"), "emulated_latency_ms_p50":
             row.get("latency_ms_p50")} for row in report["rows"]]
    return {"ok": bool(rows) and report["mode"] == "device" and all(r["accuracy"] is not None for r in rows),
            "mode": report["mode"], "machine": report["environment"]["cpu"]["machine"], "deploy_dir": str(deploy),
            "settings": report["settings"], "rows": rows, "wall_s": wall,
            "note": "latencies are emulation times (qemu-user), never comparable with hardware"}


def _fashion_dir() -> str:
    from train.datasets import fashion_mnist

    return str(fashion_mnist.locate())


def _arm32_note(cache: Path) -> dict[str, Any]:
    """The README's 32-bit Raspberry Pi OS path (tflite-runtime on armhf), checked against PyPI now."""
    found = {}
    for version in ("3.9", "3.11"):  # Pi OS Bullseye, Bookworm
        probe = cache / "armv7l-probe"
        shutil.rmtree(probe, ignore_errors=True)
        abi = "cp" + version.replace(".", "")
        for package in ("tflite-runtime", "numpy"):
            result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(probe),
                                     "--only-binary=:all:", "--python-version", version, "--implementation", "cp",
                                     "--abi", abi, "--platform", "linux_armv7l", "--platform", "manylinux2014_armv7l",
                                     "--platform", "manylinux_2_31_armv7l", package], capture_output=True, text=True,
                                    env=_pip_env(cache))
            found[f"{package} cp{version}"] = sorted(p.name for p in probe.glob("*.whl")
                                                      if p.name.startswith(package.replace("-", "_"))) \
                if result.returncode == 0 else []
        shutil.rmtree(probe, ignore_errors=True)
    return {"reached": False, "pypi_armv7l_wheels": found,
            "why": "not run: 32-bit Raspberry Pi OS Bookworm has Python 3.11, and PyPI has no armv7l wheel of "
                   "tflite-runtime for it (2.13.0, the last, stops at CPython 3.10) nor any armv7l numpy wheel, "
                   "so the documented 32-bit install cannot be reproduced from the registries reachable here"}


# --- command line ------------------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks.arm",
        description="Run the device half (the base install, python -m edge_runtime, python -m benchmarks "
                    "--deploy-dir) in an emulated Debian bookworm arm64 (qemu-user), compare every frame with "
                    "the x86 run of the same files, and write reports/arm.json.")
    add_options(parser, ArmConfig)
    parser.add_argument("--run-jobs", metavar="JOBS.json", help=argparse.SUPPRESS)  # internal: the driver
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.run_jobs:  # the driver, on either side
        return run_jobs(Path(args.run_jobs))

    def work() -> int:
        report = run(config_from_args(ArmConfig, args))
        for entry in report["files"]:
            print(f"{entry['cpu']:11s} {entry['file']:42s} {entry['source']:6s} frames {entry['frames']:3d}  "
                  f"top-1 {entry['top1_agreement']:.3f}  max|dp| {entry['max_prob_diff']:.6f}  "
                  f"{'DIFFERS' if not entry['ok'] else 'ok, see findings' if entry['mismatches'] else 'ok'}")
        for finding in report["findings"]:
            print(f"finding: {finding}")
        bench = report.get("benchmark")
        if bench:
            print(f"benchmark --deploy-dir in the guest: {'ok' if bench['ok'] else 'FAILED: ' + bench.get('error', '')}"
                  f" ({bench['wall_s']} s; emulation times)")
        print(f"{'ok' if report['ok'] else 'DIFFERENCES FOUND'}: {report['machine']} Python {report['python']}; "
              f"{report['steps_s']['total']} s; wrote reports/arm.json")
        return 0 if report["ok"] else 1

    return run_reporting_errors(work, "the cached guest is kept; run the same command again")


if __name__ == "__main__":
    sys.exit(main())

