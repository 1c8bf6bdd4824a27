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

from .check import ArmConfig, build_parser, main, run

__all__ = ["ArmConfig", "build_parser", "main", "run"]
