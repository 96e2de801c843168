"""The outgoing message queue in the ``dirq`` QueueSimple layout that ``ssmsend`` consumes.

ssmsend (APEL SSM, ``path_type = dirq``) reads ``QueueSimple`` directories: one file per
message in hashed sub-directories, locked while a sender works on it and removed only once the
message is acknowledged. The AMS sender in ``ams.py`` follows the same protocol.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from dirq.QueueSimple import QueueSimple


class OutgoingQueue:
    """Thin wrapper: add messages, iterate over locked ones, remove once acknowledged."""

    def __init__(self, path: str | os.PathLike, stale_lock_seconds: int = 600) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # ssmsend usually runs as another user from the same volume: group-writable files
        self.queue = QueueSimple(str(self.path), umask=0o002)
        self.stale_lock_seconds = stale_lock_seconds

    def add(self, message: str) -> str:
        """Write one message atomically (dirq writes a temp file and renames it)."""
        name = self.queue.add(message.encode("utf-8"))
        # the database marks the records sent right after this: make sure the message
        # survives a power loss first (dirq itself does not fsync)
        path = self.path / name
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return name

    def count(self) -> int:
        return self.queue.count()

    def locked(self) -> Iterator[tuple[str, str]]:
        """(name, message) for every message this process could lock; unlock or remove each."""
        # locks left by a sender that died are released after a while, never immediately
        self.queue.purge(maxlock=self.stale_lock_seconds)
        for name in list(self.queue.copy()):
            if not self.queue.lock(name):
                continue  # another sender has it
            try:
                body = self.queue.get(name)
            except OSError:  # removed by another sender between listing and locking
                continue
            yield name, body.decode("utf-8") if isinstance(body, bytes) else body

    def unlock(self, name: str) -> None:
        self.queue.unlock(name)

    def remove(self, name: str) -> None:
        self.queue.remove(name)
