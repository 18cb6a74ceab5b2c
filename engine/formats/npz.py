"""Reading an uploaded ``.npz`` without unpickling and without reading it whole into memory.

``np.savez`` stores its members uncompressed: such a member is memory-mapped where it lies in
the file (copy-on-write, so the engine may still write to its arrays), and the operating system
reads the pages when they are used. A 1 GiB dataset was inspected in 4.4 s when read in full,
most of it spent copying the bytes out of the zip and checking their CRC (the upload's sha256
already vouches for them). Compressed members (``np.savez_compressed``) are decompressed by numpy
as before.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the zip format's local file header, 30 bytes
# A member's zip entry, shape, dtype, Fortran order and the length of its .npy header.
Header = tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype, bool, int]


def read_headers(path: Path) -> list[Header]:
    """Each member's zip entry, shape, dtype, Fortran order and the length of its .npy header,
    read from the headers alone. ValueError for a member that is not a valid .npy array."""
    found = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read_header = (
                        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    )
                    shape, fortran, dtype = read_header(fh)
                except ValueError as exc:
                    raise ValueError(f"member {info.filename!r} is not a valid .npy array: {exc}") from None
                found.append((info, shape, dtype, fortran, fh.tell()))
    return found


def load_arrays(path: Path, headers: list[Header]) -> dict[str, np.ndarray]:
    """The members as arrays, keyed by name without ``.npy``: memory-mapped when stored, read by
    numpy (``allow_pickle=False``) otherwise. ``headers``: ``read_headers(path)``, checked by the
    caller."""
    arrays: dict[str, np.ndarray | None] = {}
    compressed: list[str] = []
    with open(path, "rb") as raw:
        for info, shape, dtype, fortran, npy_header in headers:
            name = info.filename.removesuffix(".npy")
            arrays[name] = None  # in the file's order, as np.load gives them
            if info.compress_type != zipfile.ZIP_STORED or dtype.hasobject or 0 in shape or not shape:
                compressed.append(name)
                continue
            raw.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                raise ValueError(f"member {info.filename!r} has no valid local header")
            data = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10] + npy_header
            if npy_header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.compress_size:
                raise ValueError(f"member {info.filename!r} is shorter than its header says")
            arrays[name] = np.memmap(path, dtype=dtype, mode="c", offset=data, shape=shape, order="F" if fortran else "C")
    if compressed:
        with np.load(path, allow_pickle=False) as npz:
            for name in compressed:
                arrays[name] = npz[name]
    return {name: arr for name, arr in arrays.items() if arr is not None}


def all_finite(arr: np.ndarray, *, block_bytes: int = 32 << 20) -> bool:
    """``np.isfinite(arr).all()`` a block of rows at a time, so a mapped array is never held whole."""
    if arr.dtype.kind != "f":
        return True
    if arr.ndim == 0 or arr.nbytes <= block_bytes:
        return bool(np.isfinite(arr).all())
    step = max(1, block_bytes // max(1, arr[0].nbytes))
    return all(bool(np.isfinite(arr[i : i + step]).all()) for i in range(0, len(arr), step))
