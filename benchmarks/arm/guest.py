"""The arm64 guest: qemu-user on the host, a Debian bookworm arm64 userland unpacked from Debian's own
packages with a private apt state, an ARM /proc/cpuinfo per emulated CPU model, and the project's base
install resolved by pip inside the guest from aarch64 wheels downloaded on the host."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_common.errors import EdgeError
from edge_common.files import atomic_write_text

log = logging.getLogger("edge_classify.arm")


ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file is benchmarks/arm/guest.py)


# Debian bookworm arm64: python3.11 and the C libraries it and the manylinux wheels link against
# (apt-cache depends --recurse python3.11, less dpkg/perl/tar/mime tooling, plus libstdc++6/libgomp1).
GUEST_PACKAGES = (
    "gcc-12-base",
    "libbz2-1.0",
    "libc6",
    "libcom-err2",
    "libcrypt1",
    "libdb5.3",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "libgdbm6",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "liblzma5",
    "libncursesw6",
    "libnsl2",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libtinfo6",
    "libtirpc-common",
    "libtirpc3",
    "libuuid1",
    "python3.11",
    "python3.11-minimal",
    "zlib1g",
    "libstdc++6",
    "libgomp1",
)


DEBIAN = (
    "http://deb.debian.org/debian bookworm main",
    "http://deb.debian.org/debian bookworm-updates main",
    "http://deb.debian.org/debian-security bookworm-security main",
)


AARCH64_PLATFORMS = (
    "manylinux2014_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_35_aarch64",  # OpenVINO's aarch64 wheels (glibc 2.35: Bookworm has 2.36)
)
GUEST_EXTRAS = "[openvino]"  # the base install plus OpenVINO, the third engine, where its wheel installs


# /proc/cpuinfo records: (implementer, part, Features) as the kernel prints them for each core.
_A72_FEATURES = "fp asimd evtstrm crc32 cpuid"


_A76_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


CPUS = {
    "cortex-a53": ("0x41", "0xd03", _A72_FEATURES),  # Pi 3, Pi Zero 2
    "cortex-a72": ("0x41", "0xd08", _A72_FEATURES),  # Pi 4: no dot product
    "cortex-a76": ("0x41", "0xd0b", _A76_FEATURES),  # Pi 5: dot product (asimddp)
    "neoverse-n1": ("0x41", "0xd0c", _A76_FEATURES),
}


def _qemu() -> str:
    """qemu-aarch64-static, installed from apt when missing and the user is root."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EdgeError(
            "check-arm needs qemu-user-static: run `sudo apt-get install qemu-user-static` (nothing was run)"
        )
    log.info("installing qemu-user-static from Debian")
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", "qemu-user-static"],
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
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
    (apt / "etc" / "sources.list").write_text(
        "".join(f"deb [arch=arm64 signed-by={keyring}] {line}\n" for line in DEBIAN)
    )
    options = [
        f"-oDir::State={apt / 'state'}",
        f"-oDir::State::status={apt / 'status'}",
        f"-oDir::Cache={apt / 'cache'}",
        f"-oDir::Etc::sourcelist={apt / 'etc' / 'sources.list'}",
        "-oDir::Etc::sourceparts=-",
        f"-oDir::Etc::preferencesparts={apt / 'etc' / 'preferences.d'}",
        f"-oDir::Etc::parts={apt / 'etc' / 'apt.conf.d'}",
        "-oAPT::Architecture=arm64",
        "-oAPT::Architectures::=arm64",
        "-oDebug::NoLocking=1",
        "-oAPT::Sandbox::User=root",
    ]
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
    record = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: "
        + features
        + "\nCPU implementer\t: "
        + implementer
        + "\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: "
        + part
        + "\nCPU revision\t: 3\n\n"
    )
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
    text = (
        f"#!/bin/sh\n# the guest's python3.11 (Debian bookworm arm64) on an emulated {cpu or 'default CPU'}\n"
        f'exec {qemu} -L {root}{f" -cpu {cpu}" if cpu else ""} -0 {launcher} {root}/usr/bin/python3.11 "$@"\n'
    )
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
    _check(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        "building the project's wheel",
        env=env,
    )
    wheel = next(wheels.glob("edge_classify-*.whl"))
    platforms = [arg for name in AARCH64_PLATFORMS for arg in ("--platform", name)]
    _check(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "-d",
            str(wheels),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            *platforms,
            f"{wheel}{GUEST_EXTRAS}",
            "pip",
        ],
        "pip download of the aarch64 wheels",
        env=env,
    )
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
    _check(
        [
            str(python),
            f"{pip}/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            str(wheels),
            "--target",
            str(partial),
            "--no-compile",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
            f"{wheel}{GUEST_EXTRAS}",
        ],
        "pip install inside the guest",
    )
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
    code = (
        "import json, platform, importlib.metadata as m, edge_runtime\n"
        "names = ('edge-classify', 'numpy', 'opencv-python-headless', 'ai-edge-litert', 'onnxruntime')\n"
        "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),\n"
        "  'packages': {n: m.version(n) for n in names}, 'edge_runtime_from': edge_runtime.__file__}))\n"
    )
    result = _check(
        [str(python), "-c", code],
        "reading the guest's versions",
        cwd=site.parent,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["edge_runtime_from"].startswith(str(site)):
        raise EdgeError(f"the guest imported edge_runtime from {info['edge_runtime_from']}, not from its install")
    return info
