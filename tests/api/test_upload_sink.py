"""The upload sink writes what it is given, in order, whatever the chunk sizes: chunks that
straddle, fill or exceed its two alternating blocks, and a body that ends mid-block."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from api.uploads import _Sink

BLOCK = _Sink.BLOCK


@pytest.mark.parametrize("sizes", [
    [65536] * 200 + [123], [1], [BLOCK], [BLOCK + 1, 3, 2 * BLOCK + 5], [7] * 1000 + [BLOCK + BLOCK // 2],
])  # fmt: skip
def test_the_file_and_its_digest_are_the_body(tmp_path: Path, sizes: list[int]) -> None:
    body = os.urandom(sum(sizes))

    async def spool() -> _Sink:
        sink = _Sink(tmp_path, max_bytes=len(body))
        at = 0
        for n in sizes:
            sink.add(body[at : at + n])
            at += n
            await sink.flush_if_full()
        await sink.close()
        return sink

    sink = asyncio.run(spool())
    assert sink.path.read_bytes() == body and sink.size == len(body)
    assert sink.digest.hexdigest() == hashlib.sha256(body).hexdigest()
