"""The Keras reference row and the tutorials' per-frame loop, in a fresh process (TensorFlow inside).

``python -m benchmarks.keras_worker MODEL.keras --images X.npy --labels Y.npy --predictions OUT.npy
[--video V.mp4 --video-frames N]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_worker")
    parser.add_argument("model")
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--predictions", required=True, help="where to save Keras top-1 predictions (.npy)")
    parser.add_argument("--calls", type=int, default=30, help="single-image model.predict calls to time")
    parser.add_argument("--input-spec", help="the model's InputSpec as JSON (for the video loop)")
    parser.add_argument("--video")
    parser.add_argument("--video-frames", type=int, default=60)
    args = parser.parse_args(argv)

    from train.tfenv import quiet_tensorflow
    from train.unknown import split_outputs

    quiet_tensorflow()
    from benchmarks.worker import peak_rss_mb

    started = time.perf_counter()
    import keras

    model = keras.saving.load_model(args.model, safe_mode=True, compile=False)
    model.predict(np.zeros((1, *model.input_shape[1:]), np.float32), verbose=0)
    load_ms = (time.perf_counter() - started) * 1e3
    rss = peak_rss_mb()
    images = np.load(args.images)
    labels = np.load(args.labels)
    probabilities = split_outputs(model.predict(images.astype(np.float32), batch_size=500, verbose=0))[0]
    predicted = np.argmax(probabilities, axis=1)
    np.save(args.predictions, predicted)
    times = []
    for i in range(args.calls):
        sample = images[i % len(images)][None].astype(np.float32)
        t0 = time.perf_counter()
        model.predict(sample, verbose=0)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    batch = images[:32].astype(np.float32)
    t0 = time.perf_counter()
    model.predict(batch, batch_size=len(batch), verbose=0)
    throughput = len(batch) / (time.perf_counter() - t0)
    result = {
        "accuracy": float(np.mean(predicted == labels)),
        "images": int(len(labels)),
        "agreement": 1.0,
        "load_ms": load_ms,
        "peak_rss_mb": rss,
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "latency_runs": len(ms),
        "throughput_ips": throughput,
        "backend": f"keras {keras.__version__} model.predict",
    }
    if args.video and args.input_spec:
        from benchmarks.pipeline import keras_predict_loop
        from edge_runtime.contract import InputSpec

        spec = InputSpec.from_dict(json.loads(args.input_spec))
        result["video"] = keras_predict_loop(model, args.video, spec, frames=args.video_frames)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
