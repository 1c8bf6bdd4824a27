"""Image files, read one way everywhere: the runtime's sources, ``teach``, training and the benchmarks.

One rule for which files a folder holds (:func:`images_in`) and one decoder (:func:`read_image`):

- only regular files are opened (a FIFO named ``a.jpg`` would block forever), and at most
  ``MAX_FILE_BYTES`` are read;
- the true pixel count is read from the file's own header before a byte of pixels is allocated,
  for every format OpenCV is asked to decode (JPEG, PNG, BMP, GIF, WebP, TIFF, PNM, Sun raster);
  a file of any other format is refused, since its size cannot be read cheaply;
- EXIF orientation is applied (OpenCV's ``IMREAD_COLOR``), so a phone photo saved sideways is seen
  upright by training, teaching and the runtime alike; the frame is 8-bit BGR, as a camera gives.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: any camera photo; a decoded 50 MP image is 150 MB
# An uncompressed 16-bit RGBA TIFF of 50 MP is 400 MB; nothing a camera makes is larger.
MAX_FILE_BYTES = 512 * 1024 * 1024
FORMATS = "JPEG, PNG, BMP, GIF, WebP, TIFF, PNM or Sun raster"
# Formats OpenCV can decode whose size is not read here (Radiance HDR, OpenEXR, JPEG 2000, BigTIFF,
# PAM, AVIF): refused rather than decoded blind.
_UNSIZED = (
    b"#?RADIANCE",
    b"#?RGBE",
    b"\x76\x2f\x31\x01",
    b"\x00\x00\x00\x0cjP  ",
    b"\xff\x4f\xff\x51",
    b"II+\x00",
    b"MM\x00+",
    b"P7",
    b"\x00\x00\x00\x1cftypavif",
    b"\x00\x00\x00\x20ftypavif",
)


def images_in(folder: Path) -> list[Path]:
    """A folder's image files, in its subfolders too (any depth), sorted by path.

    The one rule for every command that reads a folder of photos: ``--source DIR``, ``teach
    --examples DIR/<class>/`` and ``train --folder ROOT/<class>/``. Names starting with a dot
    (hidden files and folders) are skipped; so are links that lead nowhere or in a loop.

    Raises:
        OSError: the folder itself cannot be listed.
    """
    return sorted(_walk(Path(folder), top=True))


def _walk(folder: Path, top: bool = False) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        if top:
            raise
        return  # an unreadable subfolder holds no images we can read
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                if not entry.is_symlink():  # a link back up would walk forever
                    yield from _walk(Path(entry.path))
            elif entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(entry.path)
        except OSError:
            continue


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str, str]:
    """An image file decoded to an 8-bit BGR frame, EXIF orientation applied.

    Returns:
        ``(frame, "", "")``, or ``(None, why, kind)`` with a one-line reason and its kind: ``empty``,
        ``not a regular file``, ``too large``, ``too many pixels``, ``unknown size``, ``unreadable``
        or ``not an image``. Nothing is raised.
    """
    from edge_common.files import FileTooLarge, NotRegularFile, read_regular

    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except NotRegularFile:
        return None, "not a regular file (a FIFO or device cannot be an image)", "not a regular file"
    except FileTooLarge:
        return None, f"over {MAX_FILE_BYTES // 2**20} MB, more than any photo", "too large"
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})", "unreadable"
    if not data:
        return None, "empty file", "empty"
    why, kind = check_pixels(data, max_pixels)
    if why:
        return None, why, kind
    return decode_bytes(data)


def check_pixels(data: bytes, max_pixels: int) -> tuple[str, str]:
    """``("", "")`` when the image's header is readable and within ``max_pixels``, else why and its kind."""
    try:
        size = image_size(data)
    except (struct.error, IndexError, ValueError):
        size = None
    if size is None:
        if bytes(data[:16]).startswith(_UNSIZED):
            return (
                f"an image format whose size is not read before decoding (only {FORMATS}); convert it to PNG or JPEG",
                "unknown size",
            )
        return f"not an image file ({FORMATS})", "not an image"
    width, height = size
    if width * height > max_pixels:
        return (
            f"{width}x{height} is {width * height / 1e6:.0f} MP, over --max-pixels {max_pixels / 1e6:g} MP",
            "too many pixels",
        )
    return "", ""


def decode_bytes(data: bytes) -> tuple[np.ndarray | None, str, str]:
    """Decode checked bytes (see :func:`check_pixels`) the one way: 8-bit BGR, EXIF orientation applied."""
    import cv2

    try:
        frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits
        return None, f"not a readable image ({' '.join(str(exc).split())[-120:]})", "not an image"
    if frame is None or frame.size == 0:
        return None, "not a readable image", "not an image"
    return frame, "", ""


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header; None when the format is not one whose size is
    read here (such a file is refused, never decoded blind)."""
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM":
        width, height = struct.unpack("<ii", bytes(data[18:26]))
        return abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(bytes(data[:32]))
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
        return _pnm_size(bytes(data[:4096]))
    if head[:4] == b"\x59\xa6\x6a\x95":  # Sun raster
        return struct.unpack(">II", head[4:12])
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame size from a JPEG's SOF marker, walking every segment before it (comments and EXIF
    blocks of any length included: a size header after 64 KB of comment must still be found)."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = struct.unpack(">H", bytes(data[pos + 2 : pos + 4]))[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", bytes(data[pos + 5 : pos + 9]))
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength from a TIFF's first directory (the page OpenCV decodes)."""
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", bytes(data[4:8]))
    (count,) = struct.unpack(order + "H", bytes(data[offset : offset + 2]))
    found: dict[int, int] = {}
    for index in range(count):
        start = offset + 2 + 12 * index
        tag, kind, _n = struct.unpack(order + "HHI", bytes(data[start : start + 8]))
        if tag in (256, 257):
            value = bytes(data[start + 8 : start + 12])
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PBM/PGM/PPM text header (comments allowed)."""
    words: list[bytes] = []
    for line in head[2:].splitlines():
        words += line.split(b"#", 1)[0].split()
        if len(words) >= 2:
            return int(words[0]), int(words[1])
    return None
