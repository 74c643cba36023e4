"""The records of a W&B offline run file, read without W&B."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def wandb_offline_records(path: Path) -> Iterator[bytes]:
    """The protobuf records of a W&B offline run file (``run-*.wandb``): a 7-byte W&B header,
    then LevelDB's log format (32 KiB blocks of chunks: crc32c, length, type, data)."""
    data = path.read_bytes()
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:  # block trailer
            position += left_in_block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:  # zero padding
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST
            yield pending
            pending = b""
