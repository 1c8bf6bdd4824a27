"""A strict reader for the IDX format of (Fashion-)MNIST, gzipped or raw.

Every check names the file and what is wrong, so a truncated download or a mismatched pair of
files never surfaces as a numpy reshape traceback.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from edge_common.errors import DatasetError

# IDX type codes (third magic byte) -> numpy dtype, big-endian as the format defines.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_ITEMS = 10_000_000


def read_idx(path: str | Path, *, ndim: int | None = None, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one IDX file.

    Args:
        path: ``*.gz`` (gzip) or raw IDX file.
        ndim: expected number of dimensions (3 for images, 1 for labels); checked when given.
        item_shape: expected shape of one item (``(28, 28)`` for Fashion-MNIST); checked when given.

    Returns:
        The array in native byte order.

    Raises:
        DatasetError: when the file is missing, unreadable, truncated or malformed.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: only {len(data)} bytes, too short for an IDX header; the file is truncated")
    zero1, zero2, type_code, dims = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _DTYPES or not 1 <= dims <= 4:
        raise DatasetError(f"{path}: bad IDX magic number {data[:4].hex()}; this is not an IDX file")
    if ndim is not None and dims != ndim:
        raise DatasetError(f"{path}: has {dims} dimension(s), expected {ndim}; images and labels may be swapped")
    header_len = 4 + 4 * dims
    if len(data) < header_len:
        raise DatasetError(f"{path}: header is truncated ({len(data)} of {header_len} bytes)")
    shape = struct.unpack(f">{dims}I", data[4:header_len])
    if shape[0] > _MAX_ITEMS or any(s == 0 for s in shape[1:]):
        raise DatasetError(f"{path}: implausible dimensions {shape}")
    if item_shape is not None and tuple(shape[1:]) != tuple(item_shape):
        raise DatasetError(f"{path}: items are {shape[1:]}, expected {item_shape}")
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header_len
    if body < expected:
        raise DatasetError(
            f"{path}: truncated: header promises {shape[0]} items ({expected} bytes) but {body} bytes follow"
        )
    if body > expected:
        raise DatasetError(f"{path}: {body - expected} unexpected bytes after {shape[0]} items; the file is corrupt")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write an array as IDX (gzipped when the name ends in .gz). Used by tests and tools."""
    path = Path(path)
    codes = {v.newbyteorder("=").str[1:]: k for k, v in _DTYPES.items()}
    kind = array.dtype.newbyteorder("=").str[1:]
    if kind not in codes:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    big = array.astype(_DTYPES[codes[kind]], copy=False)
    payload = bytes([0, 0, codes[kind], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder, expected an IDX file") from None
    except PermissionError:
        raise DatasetError(f"{path}: permission denied; make the file readable") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc}); re-install the dataset") from None
