"""Unpacking of user archives (zip, tar, tar.gz) with limits, by our own code rather than
``zipfile.extractall``/``tarfile.extractall``.

No absolute paths, no ``..``, no links or devices, a bounded number of members and a bounded
total size, checked from the archive's index before anything is written.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from engine.errors import ArchiveInvalid

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 64 * 1024**3


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


def member_names(path: Path) -> list[str]:
    if is_zip(path):
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    with tarfile.open(path, "r:*") as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def _safe_relative(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise ArchiveInvalid(f"archive member {name!r} points outside the archive", detail={"member": name})
    return rel


def unpack(path: Path, dest: Path, *, max_members: int = MAX_MEMBERS, max_total_bytes: int = MAX_TOTAL_BYTES) -> Path:
    """Unpack ``path`` into ``dest`` after checking every member; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if is_zip(path):
            _unpack_zip(path, dest, max_members, max_total_bytes)
        elif is_tar(path):
            _unpack_tar(path, dest, max_members, max_total_bytes)
        else:
            raise ArchiveInvalid("not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveInvalid(f"the archive is damaged: {exc}") from None
    return dest


def _unpack_zip(path: Path, dest: Path, max_members: int, max_total: int) -> None:
    with zipfile.ZipFile(path) as zf:
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
        if total > max_total:
            raise ArchiveInvalid(f"the archive unpacks to {total} bytes; the limit is {max_total}")
        written = 0
        for info in infos:
            target = dest / _safe_relative(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Count real bytes too: a zip's declared sizes can lie.
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_total:
                        raise ArchiveInvalid(f"the archive unpacks to more than {max_total} bytes")
                    out.write(chunk)


def _unpack_tar(path: Path, dest: Path, max_members: int, max_total: int) -> None:
    with tarfile.open(path, "r:*") as tf:
        members = tf.getmembers()
        if len(members) > max_members:
            raise ArchiveInvalid(f"the archive has {len(members)} members; the limit is {max_members}")
        total = 0
        for m in members:
            _safe_relative(m.name)
            if not (m.isfile() or m.isdir()):
                raise ArchiveInvalid(f"archive member {m.name!r} is a link or a device")
            total += m.size
        if total > max_total:
            raise ArchiveInvalid(f"the archive unpacks to {total} bytes; the limit is {max_total}")
        for m in members:
            target = dest / _safe_relative(m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                raise ArchiveInvalid(f"archive member {m.name!r} cannot be read")
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


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
