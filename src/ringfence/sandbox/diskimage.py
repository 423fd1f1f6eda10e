"""Size-limited workspaces: each one a sparse ext4 image, loop-mounted on the host for the sandbox's lifetime.

Owns: the formatted template image (made once per size with mkfs.ext4), copying it sparsely for a new workspace,
attaching it to a free loop device, mounting and unmounting it, and finding leftovers after a crash.

Why an image: this kernel has no quota support (CONFIG_QUOTA is off), and a tmpfs workspace would charge a
repository's bytes to RAM. An image is disk-backed, sparse (only what is written takes space), and a full image
answers ENOSPC to the sandbox while the host disk stays healthy (S-BOX B3).

The loop device is set up with ioctl and the filesystem mounted with mount(2) through ctypes, not with the
`mount` program: starting two programs per sandbox cost more than the sandbox itself (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

from ringfence.sandbox.spec import SandboxError

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4  # the loop device lets go of the image when its filesystem is unmounted
_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2
_FS_OPTIONS = b"noinit_itable"  # no background zeroing of inode tables: the image is thrown away at destroy
_libc = ctypes.CDLL(None, use_errno=True)
TEMPLATES = ".templates"  # under the sandbox root: formatted empty images, one per size, shared by all sandboxes
_templates: dict[tuple[Path, int], Path] = {}
_lock = threading.Lock()


def available() -> str | None:
    """None if size-limited workspaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "ringfence does not run as root (loop devices and mounts need it)"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is missing (Debian package e2fsprogs)"
    if not Path("/dev/loop-control").exists():
        return "this host has no /dev/loop-control"
    return None


def _template(directory: Path, size: int) -> Path:
    """A formatted, empty image of `size` bytes (made once, then copied): mkfs costs a program start each time."""
    with _lock:
        key = (directory, size)
        found = _templates.get(key)
        if found is not None and found.exists():
            return found
        cache = directory / TEMPLATES
        cache.mkdir(mode=0o700, exist_ok=True)
        path = cache / f"workspace-{size}.img"
        partial = Path(tempfile.mkstemp(dir=cache, prefix=".partial-")[1])
        try:
            os.truncate(partial, size)
            mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
            subprocess.run(  # noqa: S603 (a fixed argument list; the only variable is our own file's path)
                [
                    mkfs,
                    "-q",
                    "-F",
                    "-m",
                    "0",  # no blocks reserved for root: the sandbox gets the whole size
                    "-O",
                    "^has_journal,^resize_inode",  # throwaway, never resized: 228 KiB of metadata to copy, not 4 MiB
                    "-E",
                    "lazy_itable_init=1,nodiscard,root_owner=0:0",
                    str(partial),
                ],
                check=True,
                capture_output=True,
            )
            os.replace(partial, path)
        except subprocess.CalledProcessError as exc:
            partial.unlink(missing_ok=True)
            raise SandboxError(f"mkfs.ext4 failed: {exc.stderr.decode(errors='replace').strip()}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _templates[key] = path
        return path


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy only the allocated ranges (a few MiB of metadata in a many-GiB image); holes stay holes."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                raise
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            position = start
            while position < end:
                copied = os.copy_file_range(src.fileno(), dst.fileno(), end - position, position, position)
                if copied == 0:
                    break
                position += copied
            offset = end
        os.ftruncate(dst.fileno(), size)


def _loop_config(image_fd: int) -> bytes:
    # struct loop_config { __u32 fd; __u32 block_size; struct loop_info64 info; __u64 __reserved[8]; }
    # loop_info64: dev, inode, rdevice, offset, sizelimit (u64 x5), number, encrypt_type, encrypt_key_size,
    # flags (u32 x4), file_name[64], crypt_name[64], encrypt_key[32], init[2] (u64)
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0)
    return struct.pack("=II", image_fd, 0) + info + bytes(64)


def _attach(image: Path) -> tuple[str, int]:
    """A free loop device backed by `image`, and an open descriptor of it (retried: another process may take
    the one offered first). Auto-clear detaches the device at its last close unless a mount holds it, so the
    caller mounts before closing the descriptor."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    image_fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(20):
            number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
            device = f"/dev/loop{number}"
            try:
                loop_fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # devtmpfs has not made the node yet
                continue
            try:
                fcntl.ioctl(loop_fd, _LOOP_CONFIGURE, _loop_config(image_fd))
                return device, loop_fd
            except OSError as exc:
                os.close(loop_fd)
                if exc.errno != errno.EBUSY:
                    raise SandboxError(f"cannot attach a loop device for the workspace: {exc.strerror}") from None
        raise SandboxError("no free loop device for the workspace after 20 tries")
    finally:
        os.close(image_fd)
        os.close(control)


def create(directory: Path, size: int, mountpoint: Path, owner: int | None) -> Path:
    """Make `directory/workspace.img` of `size` bytes and mount it on `mountpoint` (mode 0700, owned by
    `owner`). Returns the image path. The loop device goes away by itself when the filesystem is unmounted."""
    image = directory / "workspace.img"
    _sparse_copy(_template(directory.parent, size), image)
    device, loop_fd = _attach(image)
    try:
        if _libc.mount(device.encode(), str(mountpoint).encode(), b"ext4", _MS_NOSUID | _MS_NODEV, _FS_OPTIONS):
            raise SandboxError(f"cannot mount the workspace image: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(loop_fd)  # the mount now holds the device; without one, this close detaches it
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(mountpoint / "lost+found")  # the agent's workspace starts empty
    os.chmod(mountpoint, 0o700)
    if owner is not None:
        os.chown(mountpoint, owner, owner)
    return image


def unmount(mountpoint: Path) -> None:
    """Unmount a workspace image (its processes are gone by now; a lazy detach covers a straggler's open file)."""
    if _libc.umount2(str(mountpoint).encode(), 0) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOENT):  # not mounted, or already gone: nothing to do
        return
    if _libc.umount2(str(mountpoint).encode(), _MNT_DETACH) != 0:
        raise SandboxError(f"cannot unmount workspace {mountpoint}: {os.strerror(ctypes.get_errno())}")


def mounted_under(root: Path) -> list[Path]:
    """Mount points below `root` (leftovers of a crashed server), deepest first."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
