"""Which engine and accelerator run a model: the choice, what this device has, and how to ask for it.

One option set, :class:`EngineOptions`, reaches every place a model is opened (the live command,
``Classifier.open``, ``teach`` and its extractor, ``tune``, ``doctor`` and the benchmark):

- ``--accelerator auto|cpu|tensorrt|cuda|openvino|edgetpu``: ``auto`` takes what ``tune`` measured
  fastest for this file on this device when there is such a record; else an NVIDIA GPU through
  ONNX Runtime's TensorRT or CUDA provider for ``.onnx`` files, an Edge TPU for files compiled for
  it, and the CPU otherwise. An accelerator that is present but unusable (a GPU without a CUDA
  provider, a Coral without libedgetpu) is said in one line with what to install. An explicit
  choice that is unavailable is an error (exit 2) with the install line, never a CPU run.
- ``--device``: which one: a GPU index for TensorRT/CUDA, ``CPU``/``GPU``/``NPU``/``AUTO`` for
  OpenVINO, ``usb``/``pci``/``usb:N`` for the Edge TPU.
- ``--delegate PATH[:key=value,...]``: any LiteRT external delegate (Arm NN, Mesa Teflon, a vendor's).

What ran is read back from the engine (ONNX Runtime's ``session.get_providers()``, OpenVINO's
``EXECUTION_DEVICES``, the delegate LiteRT loaded), never assumed; :attr:`Backend.engine` says it
in one line, and every output carries that line.
"""

from __future__ import annotations

import ctypes.util
import glob
import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_common.cli import option

from .errors import BackendUnavailableError, EdgeError

# More interpreter threads than 4 per core only contend; 100000 crashed TFLite and hung ONNX Runtime.
MAX_THREADS = 4 * (os.cpu_count() or 1)
ACCELERATORS = ("auto", "cpu", "tensorrt", "cuda", "openvino", "edgetpu")
ONNX_ACCELERATORS = ("tensorrt", "cuda", "openvino")
TRT, CUDA, OV_EP, CPU_EP = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_OP = b"edgetpu-custom-op"
# Coral USB Accelerator: 1a6e:089a before its firmware is loaded, 18d1:9302 after.
CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}
DOCS = "docs/accelerators.md"
INSTALL = {
    "tensorrt": "install ONNX Runtime with CUDA and TensorRT: on a Jetson with JetPack 6, NVIDIA's onnxruntime-gpu "
    f"wheel for JetPack; on a PC, `pip install onnxruntime-gpu` and TensorRT 10 (see {DOCS})",
    "cuda": "install ONNX Runtime with CUDA: on a Jetson with JetPack 6, NVIDIA's onnxruntime-gpu wheel for "
    f"JetPack; on a PC, `pip uninstall onnxruntime && pip install onnxruntime-gpu` (see {DOCS})",
    "openvino": "install OpenVINO: `pip install 'edge-classify[openvino]'` (x86-64 and aarch64 wheels)",
    "edgetpu": f"install libedgetpu (Coral's apt repository: `sudo apt install libedgetpu1-std`) and plug in the "
    f"Coral (see {DOCS})",
}


@dataclass
class EngineOptions:
    """How a model is run: the flags every command that opens a model shares."""

    backend: str = option(
        "auto",
        "interpreter (default: by file type; openvino runs .onnx files)",
        choices=("auto", "litert", "tflite_runtime", "tensorflow", "onnxruntime", "openvino"),
    )
    threads: int | None = option(
        help="interpreter threads (default: the interpreter's, or what tune measured)", bounds=(1, MAX_THREADS)
    )
    accelerator: str = option(
        "auto",
        "what runs the model: auto (tune's record, else a GPU or Edge TPU that can "
        "run it, else the CPU) or one of them, never silently another",
        choices=ACCELERATORS,
    )
    device: str | None = option(
        help="which device: a GPU index (tensorrt, cuda), CPU|GPU|NPU|AUTO (openvino), usb|pci|usb:N (edgetpu)"
    )
    delegate: str | None = option(
        help="a LiteRT external delegate library, with its options: PATH[:key=value,...] (.tflite files)",
        metavar="PATH[:OPTIONS]",
    )

    def check(self) -> None:
        """Refuse combinations that cannot work (one line, exit 2)."""
        if self.delegate is not None:
            parse_delegate(self.delegate)
            if self.accelerator not in ("auto", "cpu"):
                raise EdgeError(
                    f"--delegate runs LiteRT's external delegate; leave --accelerator at auto, not {self.accelerator}"
                )
            if self.backend in ("onnxruntime", "openvino"):
                raise EdgeError(f"--delegate is a LiteRT delegate: it runs .tflite files, not --backend {self.backend}")
        if self.backend == "openvino" and self.accelerator not in ("auto", "cpu", "openvino"):
            raise EdgeError(
                f"--backend openvino runs on OpenVINO's devices; --accelerator {self.accelerator} needs another backend"
            )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`Classifier.open` and :meth:`FeatureExtractor.open`."""
        return {
            "backend": self.backend,
            "threads": self.threads,
            "accelerator": self.accelerator,
            "device": self.device,
            "delegate": self.delegate,
        }


@dataclass(frozen=True)
class DelegateSpec:
    """A LiteRT external delegate: the library and its options (``PATH[:key=value,...]``)."""

    path: str
    options: dict[str, str] = field(default_factory=dict)


def parse_delegate(text: str) -> DelegateSpec:
    """``/usr/lib/libarmnnDelegate.so:backends=GpuAcc,logging-severity=info`` as a :class:`DelegateSpec`.

    Raises:
        EdgeError: no path, or an option without ``=``.
    """
    path, _, rest = text.partition(":")
    if not path.strip():
        raise EdgeError(f"--delegate {text!r}: name the delegate library, e.g. /usr/lib/libvx_delegate.so:key=value")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgeError(f"--delegate {text!r}: option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return DelegateSpec(path.strip(), options)


# -- what this device has ------------------------------------------------------------------------


@dataclass
class Hardware:
    """The accelerators found on this device, and the libraries that drive them."""

    nvidia: list[str]  # how each NVIDIA GPU was seen (nvidia-smi, /dev/nvidia0, a Jetson's nvhost nodes)
    coral: list[str]  # Coral devices: USB ids or /dev/apex_N
    libedgetpu: str | None  # where libedgetpu was found
    onnx_providers: list[str] | None  # ONNX Runtime's available providers (None: not installed)
    openvino_devices: list[str] | None  # OpenVINO's devices (None: not installed)

    def hints(self, kind: str | None = None) -> list[str]:
        """One line per accelerator that is present but cannot be used, saying what to install."""
        lines = []
        providers = self.onnx_providers or []
        if self.nvidia and kind in (None, "onnx") and CUDA not in providers and TRT not in providers:
            lacking = (
                "ONNX Runtime is not installed"
                if self.onnx_providers is None
                else "this ONNX Runtime has no CUDA or TensorRT provider"
            )
            lines.append(
                f"GPU present, no CUDA provider: an NVIDIA GPU is here ({self.nvidia[0]}) but {lacking}, so "
                f".onnx files run on the CPU; {INSTALL['cuda']}"
            )
        if self.coral and not self.libedgetpu and kind in (None, "tflite"):
            lines.append(
                f"a Coral Edge TPU is present ({self.coral[0]}) but {EDGETPU_LIBRARY} is not installed, so "
                f"nothing runs on it; {INSTALL['edgetpu']}"
            )
        return lines


def hardware(root: str = "/", *, quick: bool = False) -> Hardware:
    """Probe this device (``root``: where to look for /dev, /sys and /proc, for tests on a made-up tree).

    ``quick``: only what :meth:`Hardware.hints` needs (the runtime asks at start-up): OpenVINO is not
    imported, and libedgetpu is looked for only when a Coral is plugged in.
    """
    coral = coral_devices(root)
    return Hardware(
        nvidia_gpus(root),
        coral,
        find_libedgetpu() if coral or not quick else None,
        onnx_providers(),
        None if quick else openvino_devices(),
    )


def nvidia_gpus(root: str = "/") -> list[str]:
    """NVIDIA GPUs as seen by ``nvidia-smi -L``, else by their device nodes (a Jetson has no nvidia-smi)."""
    found: list[str] = []
    smi = shutil.which("nvidia-smi") if root == "/" else None
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
            found += [line.split(" (UUID")[0].strip() for line in listed.splitlines() if line.startswith("GPU ")]
        except (OSError, subprocess.SubprocessError):
            pass
    if not found:
        base = Path(root)
        nodes = sorted(glob.glob(str(base / "dev/nvidia[0-9]*"))) + sorted(glob.glob(str(base / "dev/nvhost-gpu")))
        found += [f"{'/' + str(Path(node).relative_to(base))}" for node in nodes]
        tegra = base / "proc/device-tree/model"
        if not found and tegra.is_file() and b"Jetson" in tegra.read_bytes():
            found.append(tegra.read_bytes().strip(b"\0").decode(errors="replace"))
    return found


def coral_devices(root: str = "/") -> list[str]:
    """Coral Edge TPUs: the USB Accelerator by its USB ids, the M.2/PCIe card by /dev/apex_N."""
    base = Path(root)
    found = [f"/{Path(node).relative_to(base)}" for node in sorted(glob.glob(str(base / "dev/apex_*")))]
    for device in sorted(glob.glob(str(base / "sys/bus/usb/devices/*"))):
        try:
            ids = ((Path(device) / "idVendor").read_text().strip(), (Path(device) / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            found.append(f"USB {ids[0]}:{ids[1]}")
    return found


def find_libedgetpu() -> str | None:
    name = ctypes.util.find_library("edgetpu")
    if name:
        return name
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
        return EDGETPU_LIBRARY
    except OSError:
        return None


def onnx_providers() -> list[str] | None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:  # a broken install must not stop a report
        return []


def openvino_devices() -> list[str] | None:
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino

        return list(openvino.Core().available_devices)
    except Exception:  # a broken install must not stop a report
        return []


# -- ONNX Runtime's providers --------------------------------------------------------------------


def cache_root() -> Path:
    """Where engines, timing caches and tune records are kept: ``$EDGE_CLASSIFY_CACHE``, else the
    user's cache folder (``$XDG_CACHE_HOME/edge-classify``, ``~/.cache/edge-classify``)."""
    explicit = os.environ.get("EDGE_CLASSIFY_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-classify"


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensorrt_cache_dir(root: Path, model_sha: str, trt_version: str, device: str) -> Path:
    """One folder per model file, TensorRT version and GPU: an engine built for one never loads for another."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in device)[:60] or "gpu"
    return root / "tensorrt" / f"{model_sha[:16]}-trt{trt_version or 'unknown'}-{safe}"


def onnx_provider_chain(
    accelerator: str,
    *,
    model_sha: str,
    int8: bool,
    device: str | None = None,
    fp16: bool = True,
    root: Path | None = None,
    trt_version: str = "",
    gpu_name: str = "",
) -> list[tuple[str, dict[str, str]]]:
    """ONNX Runtime's providers for an accelerator, in order, with the options the anchors use.

    TensorRT: FP16 where the GPU supports it, INT8 for QDQ int8 files, the engine and timing caches
    in a folder keyed by the file's hash, the TensorRT version and the GPU; then CUDA for what
    TensorRT does not take, then the CPU. CUDA: then the CPU. OpenVINO's provider (the
    onnxruntime-openvino build): its device and cache folder.
    """
    root = root or cache_root()
    gpu = str(int(device)) if device and device.isdigit() else "0"
    cpu: tuple[str, dict[str, str]] = (CPU_EP, {})
    cuda: tuple[str, dict[str, str]] = (CUDA, {"device_id": gpu})
    if accelerator == "tensorrt":
        folder = str(tensorrt_cache_dir(root, model_sha, trt_version, gpu_name or f"gpu{gpu}"))
        options = {
            "device_id": gpu,
            "trt_fp16_enable": "True" if fp16 else "False",
            "trt_int8_enable": "True" if int8 else "False",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": folder,
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": folder,
        }
        return [(TRT, options), cuda, cpu]
    if accelerator == "cuda":
        return [cuda, cpu]
    if accelerator == "openvino":
        return [(OV_EP, {"device_type": (device or "CPU").upper(), "cache_dir": str(root / "openvino")}), cpu]
    return [cpu]


def require_providers(accelerator: str, available: list[str]) -> None:
    """Raise with the install line when ONNX Runtime here lacks the provider ``accelerator`` needs."""
    wanted = {"tensorrt": TRT, "cuda": CUDA, "openvino": OV_EP}.get(accelerator)
    if wanted and wanted not in available:
        raise BackendUnavailableError(
            f"--accelerator {accelerator}: this ONNX Runtime has no {wanted} (it has "
            f"{', '.join(available) or 'none'}); {INSTALL[accelerator]}"
        )


def check_ran_on(accelerator: str, chain: list[tuple[str, dict[str, str]]], used: list[str]) -> None:
    """ONNX Runtime falls back to the CPU silently when a provider cannot load: refuse that, from
    what the session says it uses."""
    wanted = chain[0][0]
    if wanted != CPU_EP and wanted not in used:
        raise BackendUnavailableError(
            f"--accelerator {accelerator}: ONNX Runtime could not start {wanted} (the "
            f"session runs on {', '.join(used) or 'nothing'}: missing CUDA, cuDNN or "
            f"TensorRT libraries?); {INSTALL.get(accelerator, '')}"
        )


def is_edgetpu_file(data: bytes) -> bool:
    """Whether a TFLite file was compiled by edgetpu_compiler (it holds the Edge TPU's custom op)."""
    return EDGETPU_OP in data


def machine_id() -> str:
    """This device in one string, for tune records: CPU model, architecture, and GPUs."""
    from .system import cpu_info

    cpu = cpu_info()
    gpus = nvidia_gpus()
    return f"{cpu['model']} ({platform.machine()}, {cpu['cores']} cores){'; ' + ', '.join(gpus) if gpus else ''}"
