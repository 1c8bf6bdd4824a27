"""Read PyTorch's legacy ``.pth`` format with numpy alone, safely.

The legacy (non-zip) format is five pickles in a row (magic number, protocol version, system
info, the state dict, the list of storage keys) followed by the raw storages: for each key in that
order, an 8-byte little-endian element count and the little-endian data. The state dict's
tensors refer to storages by persistent id ``('storage', <Type>Storage, key, location, size)`` and
are rebuilt by ``torch._utils._rebuild_tensor_v2`` (older files add a sixth, view field).

The unpickler admits exactly those globals (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types) and refuses every other one,
so a tampered file cannot run code, and nothing here needs torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge_common.errors import EdgeError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_MAX_ELEMENTS = 1 << 31  # no storage of a real checkpoint comes near; a hostile count must not allocate


class WeightsFileError(EdgeError):
    """A weights file that is truncated, corrupt, or not what it claims to be."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _StorageRef:
    dtype: np.dtype
    key: str
    size: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_ignored: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO, path: Path) -> None:
        super().__init__(handle)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsFileError(
            f"{self._path}: names the Python global {module}.{name}, which a weights file never "
            "needs; refusing to load it (it may be tampered with)"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        storage = isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
        if not (storage and isinstance(pid[1], _StorageType)):
            raise WeightsFileError(
                f"{self._path}: unexpected persistent id {str(pid)[:80]}; not a PyTorch weights file"
            )
        return _StorageRef(pid[1].dtype, str(pid[2]), int(pid[4]))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy ``.pth`` file as numpy arrays, by name, in file order.

    Raises:
        WeightsFileError: the file is missing, truncated, corrupt, in another format, or names a
            Python global other than the few a state dict needs.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data[:2] == b"PK":
        raise WeightsFileError(f"{path}: a zip-format PyTorch file; only the legacy format is read here")
    handle = io.BytesIO(data)
    try:
        return _read(handle, path)
    except WeightsFileError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        struct.error,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
    ) as exc:
        raise WeightsFileError(
            f"{path}: truncated or corrupt weights file ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:80]}); reinstall the weights package"
        ) from None


def _read(handle: io.BytesIO, path: Path) -> dict[str, np.ndarray]:
    magic = _RestrictedUnpickler(handle, path).load()
    if magic != LEGACY_MAGIC:
        raise WeightsFileError(f"{path}: not a PyTorch legacy weights file (bad magic number)")
    _RestrictedUnpickler(handle, path).load()  # protocol version
    info = _RestrictedUnpickler(handle, path).load()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise WeightsFileError(f"{path}: big-endian weights are not supported")
    state = _RestrictedUnpickler(handle, path).load()
    keys = _RestrictedUnpickler(handle, path).load()
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsFileError(f"{path}: holds no state dict of tensors")
    dtypes = {ref.storage.key: ref.storage.dtype for ref in state.values() if isinstance(ref, _TensorRef)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        count = struct.unpack("<q", _exactly(handle, 8, path))[0]
        dtype = dtypes.get(str(key), np.dtype(np.float32))
        if not 0 <= count <= _MAX_ELEMENTS:
            raise WeightsFileError(f"{path}: storage {key} claims {count} elements; the file is corrupt")
        storages[str(key)] = np.frombuffer(
            _exactly(handle, count * dtype.itemsize, path), dtype=dtype.newbyteorder("<")
        )
    tensors = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise WeightsFileError(f"{path}: entry {name!r} is not a tensor")
        tensors[str(name)] = _materialize(ref, storages, path, str(name))
    return tensors


def _exactly(handle: io.BytesIO, count: int, path: Path) -> bytes:
    chunk = handle.read(count)
    if len(chunk) != count:
        raise WeightsFileError(
            f"{path}: truncated: a storage needs {count} more bytes than the file holds; reinstall the weights package"
        )
    return chunk


def _materialize(ref: _TensorRef, storages: dict[str, np.ndarray], path: Path, name: str) -> np.ndarray:
    storage = storages.get(ref.storage.key)
    if storage is None:
        raise WeightsFileError(f"{path}: tensor {name!r} refers to a storage the file does not hold")
    if not ref.shape:
        return np.array(storage[ref.offset])
    # The furthest element the view reaches must lie inside the storage.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if ref.offset < 0 or min(ref.stride) < 0 or last >= len(storage):
        raise WeightsFileError(f"{path}: tensor {name!r} reaches past its storage; the file is corrupt")
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :], shape=ref.shape, strides=tuple(s * storage.itemsize for s in ref.stride)
    )
    return np.array(view)  # a copy: the caller owns it, and it no longer aliases the file buffer
