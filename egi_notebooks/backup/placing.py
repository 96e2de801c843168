"""Moving a restored tree into a user's claim without ever following a link.

The restoring process and the user's own processes share one uid (the hub pod, the CronJob
and the notebooks all run as 1000), and the user may change anything in their claim at any
moment. So restic never writes into a claim: it restores into a private staging directory the
user cannot reach, :func:`inspect` checks what it wrote, and :func:`place` moves it into the
claim through directory file descriptors. The claim's directory is opened once, each folder
under it with ``O_NOFOLLOW``, and every entry is made or replaced relative to its folder's
descriptor (``mkdir``, ``rename``, ``open(O_CREAT | O_EXCL)``, ``unlink``, all with ``dir_fd``),
none of which follows a link at its last component. A link the user plants anywhere, at any
moment, is replaced where a restored entry goes, or makes the restore stop with
:class:`PlacingError`; nothing is ever written through it.

What is placed: directories (merged into an existing real directory), regular files and
symbolic links (each replacing what is at its place, atomically, by ``rename``). A link is
recreated as a link, never followed: it is the user's own, resolved in their pod, where only
their claim is mounted. Devices, fifos and sockets are left out (:func:`inspect` lists them),
and a file sharing its inode with something outside the staging directory is refused. Within
one filesystem entries are renamed (a folder whole when nothing is at its place; hard links
between restored files stay links); across filesystems they are copied (each name then gets
its own copy).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections import Counter
from collections.abc import Sequence

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a link or file replaced where a folder goes, again and again: the user keeps racing
ATTEMPTS = 5
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR)


def raced() -> OSError:
    """What :meth:`Placer.place` reports, with the path, when the user keeps winning a race."""
    return OSError(errno.EBUSY, "keeps being replaced during the restore: stopped")


class PlacingError(Exception):
    """The tree could not be placed (``path`` relative to the destination)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """A descriptor of the directory ``name`` (relative to ``dir_fd``); OSError (ELOOP or
    ENOTDIR) when ``name`` is a link or not a directory."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def open_under(root: str, path: str) -> int:
    """A descriptor of the directory ``path``: ``root`` (the operator's, trusted) opened as it
    is, every component of ``path`` below it with ``O_NOFOLLOW``. OSError when one is a link or
    not a directory, ValueError when ``path`` is not below ``root``."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{path} is not under {root}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.split(os.sep):
            if part in ("", os.curdir):
                continue
            child = open_dir(part, fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def inspect(fd: int) -> list[str]:
    """Check the tree under the directory ``fd`` (what restic wrote); the paths it holds that
    are not placed (devices, fifos, sockets). PlacingError for a regular file that has more
    links than names in the tree: it shares its inode with a file elsewhere."""
    skipped: list[str] = []
    names: Counter[int] = Counter()
    links: dict[int, tuple[int, str]] = {}

    def walk(dir_fd: int, rel: str) -> None:
        with os.scandir(dir_fd) as entries:
            listed = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
        for name, st in listed:
            path = os.path.join(rel, name)
            if stat.S_ISDIR(st.st_mode):
                child = open_dir(name, dir_fd)
                try:
                    walk(child, path)
                finally:
                    os.close(child)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    names[st.st_ino] += 1
                    links[st.st_ino] = (st.st_nlink, path)
            elif not stat.S_ISLNK(st.st_mode):
                skipped.append(path)

    walk(fd, "")
    for ino, (nlink, path) in links.items():
        if nlink > names[ino]:
            raise PlacingError(path, "shares its data with a file outside the restored tree")
    return sorted(skipped)


class Placer:
    """Moves a staged tree into a destination directory, both given as descriptors."""

    def __init__(self, skipped: Sequence[str] = ()) -> None:
        self.skipped = set(skipped)
        #: os.rename failed across filesystems once: copy from then on
        self.copy = False
        self.as_root = os.geteuid() == 0

    def place(self, src_fd: int, dst_fd: int, rel: str = "") -> None:
        """Move the content of ``src_fd`` into ``dst_fd``, folders merged, other entries
        replaced."""
        # a read-only folder of the snapshot: its entries must be moved out of it
        os.chmod(src_fd, 0o700)
        with os.scandir(src_fd) as entries:
            listed = sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)
        for name, st in listed:
            path = os.path.join(rel, name)
            if path in self.skipped:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    self.folder(src_fd, dst_fd, name, st, path)
                elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    self.entry(src_fd, dst_fd, name, st, path)
            except PlacingError:
                raise
            except OSError as e:
                raise PlacingError(path, e.strerror or str(e)) from None

    def folder(self, src_fd: int, dst_fd: int, name: str, st: os.stat_result, path: str) -> None:
        if self.moved_whole(src_fd, dst_fd, name, path):
            return
        created = False
        for _ in range(ATTEMPTS):
            try:
                child = open_dir(name, dst_fd)
                break
            except FileNotFoundError:
                try:
                    os.mkdir(name, 0o700, dir_fd=dst_fd)
                    created = True
                except FileExistsError:
                    pass
            except OSError as e:
                if e.errno not in _NOT_A_DIR:
                    raise
                # a link or a file where the folder goes: removed, never followed
                try:
                    os.unlink(name, dir_fd=dst_fd)
                except (FileNotFoundError, IsADirectoryError):
                    pass
        else:
            raise raced()
        try:
            source = open_dir(name, src_fd)
            try:
                self.place(source, child, path)
            finally:
                os.close(source)
            if created:  # an existing folder keeps its mode; a new one gets the snapshot's
                self.metadata(child, st)
        finally:
            os.close(child)

    def moved_whole(self, src_fd: int, dst_fd: int, name: str, path: str) -> bool:
        """Rename the staged folder ``name`` into ``dst_fd`` in one go when nothing is there
        (or an empty folder): rename never follows a link at ``name`` (it fails with ENOTDIR),
        and nobody else can have touched the staged folder's content. False when it must be
        merged or copied entry by entry."""
        if self.copy or any(s.startswith(path + os.sep) for s in self.skipped):
            return False
        try:
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as e:
            if e.errno == errno.EXDEV:
                self.copy = True
            elif e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            return False
        return True

    def metadata(self, fd: int, st: os.stat_result) -> None:
        if self.as_root:
            os.fchown(fd, st.st_uid, st.st_gid)
        os.chmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def entry(self, src_fd: int, dst_fd: int, name: str, st: os.stat_result, path: str) -> None:
        """A file or link: renamed over what is at ``name`` (a link there is replaced, not
        followed), or copied to a new name and renamed so across filesystems."""
        if not self.copy:
            try:
                self.replace(name, src_fd, name, dst_fd)
                return
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                self.copy = True
        temporary = f".egi-notebooks-restore-{secrets.token_hex(8)}"
        try:
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=src_fd), temporary, dir_fd=dst_fd)
                if self.as_root:
                    os.chown(temporary, st.st_uid, st.st_gid, dir_fd=dst_fd,
                             follow_symlinks=False)  # fmt: skip
                os.utime(temporary, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd,
                         follow_symlinks=False)  # fmt: skip
            else:
                self.copy_file(src_fd, name, dst_fd, temporary, st)
            self.replace(temporary, dst_fd, name, dst_fd)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=dst_fd)
            except OSError:
                pass
            raise

    def copy_file(
        self, src_fd: int, name: str, dst_fd: int, temporary: str, st: os.stat_result
    ) -> None:
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
        try:
            # O_EXCL: a new file, never an existing one nor a link's target
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            target = os.open(temporary, flags, 0o600, dir_fd=dst_fd)
            try:
                with open(source, "rb", closefd=False) as i, open(target, "wb", closefd=False) as o:
                    shutil.copyfileobj(i, o, 1024 * 1024)
                self.metadata(target, st)
            finally:
                os.close(target)
        finally:
            os.close(source)

    @staticmethod
    def replace(name: str, src_fd: int, new: str, dst_fd: int) -> None:
        """rename ``name`` to ``new``; a folder at ``new`` (none in the snapshot there) is
        removed first, without following links (shutil.rmtree with ``dir_fd``)."""
        for _ in range(ATTEMPTS):
            try:
                os.rename(name, new, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                return
            except FileNotFoundError:  # the copy's temporary name, moved away by the user
                raise raced() from None
            except OSError as e:
                if e.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise
            try:
                shutil.rmtree(new, dir_fd=dst_fd)
            except OSError:  # gone, or a link by now (which the next rename replaces)
                pass
        raise raced()


def place(src_fd: int, dst_fd: int, skipped: Sequence[str] = ()) -> None:
    """Move the tree under ``src_fd`` into ``dst_fd`` (see the module's docstring)."""
    Placer(skipped).place(src_fd, dst_fd)
