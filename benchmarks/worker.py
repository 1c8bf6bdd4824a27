"""One benchmark measurement in its own fresh process: one model file, one thread count.

``python -m benchmarks.worker FILE --threads N --images X.npy --labels Y.npy [--reference R.npy]``
prints one JSON object: load time and peak memory (taken before any data is loaded), accuracy
and agreement on the given images, batch-1 latency percentiles after warm-up, and throughput over
a larger batch. It imports only ``edge_runtime`` (never TensorFlow), so the same worker runs on a
Raspberry Pi.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space, in MiB."""
    # Linux: VmHWM belongs to the current address space. ru_maxrss does not: execve keeps the
    # high-water mark of the address space it replaces, which after vfork is the parent's.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def batch1_seconds(
    classifier: Any, tensor: np.ndarray, seconds: float, min_runs: int, max_runs: int = 200_000
) -> np.ndarray:
    """Batch-1 latency of the interpreter call as an application sees it (set input, invoke, read):
    one time per call, for at least ``seconds`` and ``min_runs`` calls."""
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while (len(timings) < min_runs or time.perf_counter() < deadline) and len(timings) < max_runs:
        t0 = time.perf_counter()
        classifier.infer(tensor)
        timings.append(time.perf_counter() - t0)
    return np.asarray(timings)


def measure(
    path: str,
    threads: int,
    images: np.ndarray | None,
    labels: np.ndarray | None,
    reference: np.ndarray | None,
    min_seconds: float,
    min_runs: int,
    batch: int,
    backend: str = "auto",
    accelerator: str = "auto",
) -> dict:
    from edge_runtime.classifier import Classifier
    from edge_runtime.preprocess import to_input_tensor

    started = time.perf_counter()
    classifier = Classifier.open(path, backend, threads, accelerator=accelerator)
    probe = np.zeros(classifier.input_spec.shape[1:], np.uint8)
    classifier.infer(to_input_tensor(probe[None], classifier.input_spec))
    load_ms = (time.perf_counter() - started) * 1e3
    result = {
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
        "backend": classifier.backend.name,
        "backend_version": classifier.backend.version,
        "engine": classifier.engine,
        "accelerator": classifier.backend.accelerator,
        "threads": threads,
    }
    spec = classifier.input_spec
    if images is not None and len(images):
        # The accuracy pass doubles as warm-up for the latency runs that follow.
        tensors = [to_input_tensor(image[None], spec) for image in images]
        probabilities = np.stack([classifier.infer(tensor) for tensor in tensors])
        predicted = np.argmax(probabilities, axis=1)
        if labels is not None:
            result["accuracy"] = float(np.mean(predicted == labels))
            result["images"] = int(len(labels))
        if reference is not None:
            result["agreement"] = float(np.mean(predicted == reference[: len(predicted)]))
        sample = tensors[0]
    else:
        sample = to_input_tensor(probe[None], spec)
        for _ in range(50):
            classifier.infer(sample)
    ms = batch1_seconds(classifier, sample, min_seconds, min_runs) * 1e3
    result.update(
        latency_ms_p50=float(np.percentile(ms, 50)),
        latency_ms_p95=float(np.percentile(ms, 95)),
        latency_ms_p99=float(np.percentile(ms, 99)),
        latency_ms_mean=float(ms.mean()),
        latency_ms_min=float(ms.min()),
        latency_runs=int(len(ms)),
    )
    # Throughput: a batch of frames through the full predict path (preprocess included).
    frames = [probe] * batch if images is None or not len(images) else list(images[:batch])
    frames = (frames * ((batch + len(frames) - 1) // len(frames)))[:batch]
    rounds, spent = 0, 0.0
    while rounds < 3 or spent < min_seconds / 2:
        t0 = time.perf_counter()
        classifier.predict_batch(frames)
        spent += time.perf_counter() - t0
        rounds += 1
    result["throughput_ips"] = rounds * batch / spent
    result["throughput_batch"] = batch
    classifier.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--images")
    parser.add_argument("--labels")
    parser.add_argument("--reference", help="Keras top-1 predictions for agreement")
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--min-runs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    from edge_runtime.errors import EdgeError, one_line

    try:
        images = np.load(args.images, mmap_mode="r") if args.images else None
        labels = np.load(args.labels) if args.labels else None
        reference = np.load(args.reference) if args.reference else None
        result = measure(
            args.model,
            args.threads,
            images,
            labels,
            reference,
            args.min_seconds,
            args.min_runs,
            args.batch,
            args.backend,
            args.accelerator,
        )
    except EdgeError as exc:
        print(json.dumps({"error": one_line(exc)}))
        return exc.exit_code
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
