"""Host-side access to a sandbox's workspace that the sandbox cannot turn against the host.

Also `discard`, the end of every backend's destroy: the workspace's descriptor closed, its image unmounted, the
sandbox's directory removed.

The agent controls the workspace's contents, symlinks included: a link `out -> /etc/shadow` must never make
ringfence (possibly root) read or write a host file. Every path is walked component by component with
`O_NOFOLLOW` from an open descriptor of the workspace, so no link is ever followed and `..` is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from ringfence.sandbox import diskimage
from ringfence.sandbox.spec import SandboxError

MAX_READ = 64 * 2**20


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or not parts or any(p == ".." for p in parts) or "\x00" in path:
        raise SandboxError(f"workspace path {path!r} must be relative, without '..'")
    return parts


@contextlib.contextmanager
def _parent(root_fd: int, parts: list[str], create: bool, owner: tuple[int, int] | None) -> Iterator[int]:
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                if owner is not None:
                    os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except NotADirectoryError:
                raise SandboxError(f"workspace path component {part!r} is not a directory (or is a link)") from None
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def write(root_fd: int, path: str, data: bytes, owner: tuple[int, int] | None) -> None:
    parts = _parts(path)
    try:
        with _parent(root_fd, parts, True, owner) as parent:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=parent)
            try:
                if owner is not None:
                    os.fchown(fd, *owner)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
    except OSError as exc:
        raise SandboxError(f"cannot write workspace file {path!r}: {exc.strerror}") from None


def read(root_fd: int, path: str) -> bytes:
    parts = _parts(path)
    try:
        with _parent(root_fd, parts, False, None) as parent:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or leak
                    raise SandboxError(f"workspace path {path!r} is not a regular file")
                if info.st_size > MAX_READ:
                    raise SandboxError(f"workspace file {path!r} is {info.st_size} bytes; at most {MAX_READ} are read")
                chunks, total = [], 0
                while chunk := os.read(fd, 1 << 20):
                    total += len(chunk)
                    if total > MAX_READ:
                        raise SandboxError(f"workspace file {path!r} grew past {MAX_READ} bytes while read")
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
    except OSError as exc:
        raise SandboxError(f"cannot read workspace file {path!r}: {exc.strerror}") from None


async def discard(root_fd: int | None, image: bool, mountpoint: Path, directory: Path) -> None:
    """Close the workspace's descriptor (if still open), unmount its image (if it has one), remove `directory`."""
    if root_fd is not None:
        os.close(root_fd)
    if image:
        await asyncio.to_thread(diskimage.unmount, mountpoint)
    await asyncio.to_thread(shutil.rmtree, directory, True)
