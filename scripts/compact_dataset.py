"""Make a compact copy of a folder dataset: every image's shorter side scaled to N pixels, JPEG.

    .venv/bin/python scripts/compact_dataset.py SOURCE DEST --short-side 160 --quality 85 \
        --split train=train --split validation=test

Class folders and file names are kept (``.jpg``); each ``--split FROM=TO`` copies SOURCE/FROM to
DEST/TO. Images already smaller are re-encoded, never enlarged. Files OpenCV cannot decode are
reported and left out. Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge_common.files import atomic_write_bytes  # noqa: E402
from edge_runtime.images import IMAGE_SUFFIXES  # noqa: E402


def compact(source: Path, dest: Path, short_side: int, quality: int) -> tuple[int, int]:
    written = skipped = 0
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipping {path}: not a decodable image", file=sys.stderr)
            skipped += 1
            continue
        h, w = image.shape[:2]
        scale = short_side / min(h, w)
        if scale < 1:
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        target = dest / path.relative_to(source).with_suffix(".jpg")
        atomic_write_bytes(target, data.tobytes())
        written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--split", action="append", default=[], metavar="FROM=TO")
    args = parser.parse_args(argv)
    pairs = [s.split("=", 1) for s in args.split] or [["", ""]]
    for origin, target in pairs:
        written, skipped = compact(args.source / origin, args.dest / target, args.short_side, args.quality)
        print(f"{args.source / origin} -> {args.dest / target}: {written} images, {skipped} skipped")
    for extra in ("LICENSE",):
        if (args.source / extra).is_file():
            shutil.copy(args.source / extra, args.dest / extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
