"""A small file in the instance folder, mapped into the memory of every worker of a machine."""

from __future__ import annotations

import fcntl
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MappedFile:
    """size bytes shared by the processes that map path; writers take the file's lock."""

    def __init__(self, path: Path, size: int) -> None:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _flock(descriptor):
                if os.fstat(descriptor).st_size < size:
                    os.ftruncate(descriptor, size)
            self.map = mmap.mmap(descriptor, size)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    @contextmanager
    def locked(self) -> Iterator[None]:
        with _flock(self._descriptor):
            yield

    def close(self) -> None:
        self.map.close()
        os.close(self._descriptor)


@contextmanager
def _flock(descriptor: int) -> Iterator[None]:
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
