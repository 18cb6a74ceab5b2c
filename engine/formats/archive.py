"""Unpacking of user archives (zip, tar, tar.gz) with limits, by our own code rather than
``zipfile.extractall``/``tarfile.extractall``.

No absolute paths, no ``..``, no links or devices, a bounded number of members and a bounded
total size. The size bound is tied to the archive's own size (a compression-ratio limit with a
floor, under an absolute ceiling): a small archive that claims gigabytes is a decompression bomb.
It is checked from the archive's index before anything is written, and again while each member
is streamed out, with a running count, because an index can lie.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from engine.errors import ArchiveInvalid
from engine.formats.redact import path_free

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 64 * 1024**3
# Dense weights barely deflate; a ratio past 200 is zeros or an attack. Small archives may still
# hold up to the floor (a pruned model's zeros deflate well).
MAX_RATIO = 200
MIN_UNPACKED_CAP = 64 * 1024**2
TOO_LARGE = "archive_too_large"
_CHUNK = 1 << 20
# What a truncated or corrupted archive raises while it is read.
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def unpacked_cap(archive_bytes: int, *, ratio: int = MAX_RATIO, floor: int = MIN_UNPACKED_CAP,
                 ceiling: int = MAX_TOTAL_BYTES) -> int:
    """The most bytes an archive of ``archive_bytes`` may unpack to."""
    return min(ceiling, max(floor, ratio * archive_bytes))


def is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def is_tar(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:2] == b"\x1f\x8b":  # gzip: only tar.gz is an accepted gzip payload
        try:
            with tarfile.open(path, "r:gz") as tf:
                tf.next()
            return True
        except (tarfile.TarError, OSError, EOFError):
            return False
    return len(head) >= 262 and head[257:262] == b"ustar"


def member_names(path: Path, *, max_members: int = MAX_MEMBERS, max_total_bytes: int | None = None) -> list[str]:
    """The file members' names, from the index; refuses an archive over the limits."""
    cap = _cap(path, max_total_bytes)
    try:
        if is_zip(path):
            with zipfile.ZipFile(path) as zf:
                return [i.filename for i in _zip_index(zf, max_members, cap) if not i.is_dir()]
        with tarfile.open(path, "r:*") as tf:
            return [m.name for m in _tar_index(tf, max_members, cap) if m.isfile()]
    except _DAMAGED as exc:
        raise ArchiveInvalid(f"the archive is damaged: {path_free(exc, 'the archive')}") from None


def _safe_relative(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise ArchiveInvalid(f"archive member {name!r} points outside the archive", detail={"member": name})
    return rel


def _cap(path: Path, max_total_bytes: int | None) -> int:
    return unpacked_cap(path.stat().st_size) if max_total_bytes is None else max_total_bytes


def _too_large(total: int | None, cap: int) -> ArchiveInvalid:
    claim = f"to {total} bytes" if total is not None else "to more bytes"
    return ArchiveInvalid(
        f"the archive unpacks {claim} than the limit of {cap} bytes for an archive of its size "
        f"(at most {MAX_RATIO} times its size, at least {MIN_UNPACKED_CAP} bytes); upload the files "
        "uncompressed or in a smaller archive",
        code=TOO_LARGE,
        detail={"limit_bytes": cap},
    )


def unpack(path: Path, dest: Path, *, max_members: int = MAX_MEMBERS, max_total_bytes: int | None = None) -> Path:
    """Unpack ``path`` into ``dest`` after checking every member; return ``dest``.

    ``max_total_bytes`` defaults to ``unpacked_cap`` of the archive's size."""
    cap = _cap(path, max_total_bytes)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if is_zip(path):
            _unpack_zip(path, dest, max_members, cap)
        elif is_tar(path):
            _unpack_tar(path, dest, max_members, cap)
        else:
            raise ArchiveInvalid("not a zip or tar archive")
    except _DAMAGED as exc:
        raise ArchiveInvalid(f"the archive is damaged: {path_free(exc, 'the archive')}") from None
    return dest


def _zip_index(zf: zipfile.ZipFile, max_members: int, cap: int) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise ArchiveInvalid(f"the archive has {len(infos)} members; the limit is {max_members}")
    total = 0
    for info in infos:
        _safe_relative(info.filename)
        mode = (info.external_attr >> 16) & 0o170000
        if mode and mode not in (0o100000, 0o040000):
            raise ArchiveInvalid(f"archive member {info.filename!r} is a link or a device")
        total += info.file_size
    if total > cap:
        raise _too_large(total, cap)
    return infos


def _tar_index(tf: tarfile.TarFile, max_members: int, cap: int) -> Iterator[tarfile.TarInfo]:
    """Members one at a time (``getmembers`` would decompress the whole stream first), refusing
    as soon as the declared sizes pass the cap."""
    total = count = 0
    while (member := tf.next()) is not None:
        count += 1
        if count > max_members:
            raise ArchiveInvalid(f"the archive has more than {max_members} members; the limit is {max_members}")
        _safe_relative(member.name)
        if not (member.isfile() or member.isdir()):
            raise ArchiveInvalid(f"archive member {member.name!r} is a link or a device")
        total += member.size
        if total > cap:
            raise _too_large(None, cap)
        yield member


def _unpack_zip(path: Path, dest: Path, max_members: int, cap: int) -> None:
    with zipfile.ZipFile(path) as zf:
        written = 0
        for info in _zip_index(zf, max_members, cap):
            target = dest / _safe_relative(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                written = _copy_bounded(src, target, written, cap)


def _unpack_tar(path: Path, dest: Path, max_members: int, cap: int) -> None:
    with tarfile.open(path, "r:*") as tf:
        members = list(_tar_index(tf, max_members, cap))
        written = 0
        for m in members:
            target = dest / _safe_relative(m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                raise ArchiveInvalid(f"archive member {m.name!r} cannot be read")
            with src:
                written = _copy_bounded(src, target, written, cap)


def _copy_bounded(src: IO[bytes], target: Path, written: int, cap: int) -> int:
    """Stream one member out, counting real bytes against the cap across members: refused at the
    first chunk that would pass it, whatever the index declared. Returns the new count."""
    with open(target, "wb") as out:
        while chunk := src.read(min(_CHUNK, cap - written + 1)):
            written += len(chunk)
            if written > cap:
                raise _too_large(None, cap)
            out.write(chunk)
    return written


def pack_zip(folder: Path, dest: Path, *, compress: bool = False) -> Path:
    """Zip a folder (an HF checkpoint, an ONNX model with external data) for delivery.

    Stored by default (dense weights do not deflate); ``compress`` deflates, which is what turns
    the zeros of an unstructured-pruned model into a smaller download.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(dest, "w", compression=method) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    return dest
