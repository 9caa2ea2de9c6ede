"""Crash-safe writes: a file or folder appears under its final name only when complete.

* :func:`new_folder` builds a folder beside its target (``.<name>.new.<random>``) and swaps it in:
  on Linux with one atomic ``renameat2(RENAME_EXCHANGE)``, elsewhere by moving the old folder to
  ``.<name>.old.<random>`` first. Killed at any point, the old folder or the new one is whole under
  the target name (or, between the two renames of the fallback, in ``.<name>.old.*``, which
  :func:`recover` moves back). :func:`recover` also deletes ``.<name>.new.*`` leftovers.
* :class:`AtomicFile` writes a file under a temporary name in the target's folder and renames it at
  the end; creating it first checks that the location is writable before any work is done.
* :func:`fault` marks named points where tests kill the process (``UDTC_FAULT=kill:<point>``; ``term:<point>``
  sends it SIGTERM) or
  simulate a full disk (``UDTC_FAULT=enospc:<point>``).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fault(point: str) -> None:
    """Test hook: die here (``UDTC_FAULT=kill:<point>``) or fail as a full disk (``enospc:<point>``)."""
    wanted = os.environ.get("UDTC_FAULT")
    if not wanted:
        return
    action, _, name = wanted.partition(":")
    if name != point:
        return
    if action == "kill":
        os._exit(99)
    if action == "term":  # as `kill <pid>` would: the handler `udtc.cli` installs decides what happens
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def disk_error(err: BaseException, what: str) -> OSError | None:
    """A one-line error for a full disk (or quota) while writing ``what``, else None."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in text or "os error 28" in text:
        full = OSError(f"no space left on device while writing {what}; free some space or write somewhere else "
                       "(nothing under the final name was changed)")
        full.errno = errno.ENOSPC
        return full
    return None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _siblings(target: Path, kind: str) -> list[Path]:
    return [Path(p) for p in glob.glob(os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.{kind}.*"))]


def recover(target: Path) -> None:
    """Finish or undo an interrupted :func:`new_folder` swap of ``target``: an old folder moved aside
    comes back when the target is missing; every other leftover is deleted."""
    for old in _siblings(target, "old"):
        if not target.exists():
            os.rename(old, target)
        else:
            remove(old)
    for new in _siblings(target, "new"):
        remove(new)


def replace(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``; the previous ``target`` is deleted afterwards."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(new, target)
        return
    if _exchange(new, target):
        fault("swap:done")  # target is the new folder, ``new`` holds the old one
        remove(new)
        return
    old = new.with_name(new.name.replace(".new.", ".old.", 1))
    os.rename(target, old)
    fault("swap:old-moved")  # target missing, old whole in .old.*, new whole in .new.*: recover() restores old
    os.rename(new, target)
    remove(old)


@contextmanager
def new_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; when the block ends without error it replaces ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new.", dir=target.parent))
    honour_umask(tmp)  # mkdtemp makes it 0700: the folder gets the mode a plain mkdir would
    try:
        yield tmp
        honour_umask_tree(tmp)  # some writers (e.g. transformers' weights) make their files 0600
        fault("swap:before")  # the new folder is complete, the old one untouched
        replace(tmp, target)
    except BaseException as err:
        remove(tmp)
        full = disk_error(err, str(target))
        if full is not None:
            raise full from None
        raise


def honour_umask(path: Path) -> None:
    """Give ``path`` (made private by mkdtemp/mkstemp) the mode a plain mkdir/open would: 0755/0644 under umask 022."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def honour_umask_tree(folder: Path) -> None:
    """:func:`honour_umask` on ``folder`` and everything in it (symlinks left alone)."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            honour_umask(path)


def files_in(folder: Path) -> list[str]:
    """Relative paths of the files in ``folder`` (what udtc wrote there), hidden names left out."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _host() -> str:
    import socket  # here, not at import: only a written output needs it

    return socket.gethostname()


def _owner() -> str:
    """``<host>-<pid>``: which process a temporary file belongs to."""
    return f"{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(path: Path) -> None:
    """Delete the temporary files of :class:`AtomicFile` for ``path`` left by processes of this host that no longer
    run (SIGKILL, a crash, the OOM killer: nothing could clean up). Others' files, running or on other hosts, stay."""
    if os.name != "posix":
        return
    host = _host()
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(host)}-*.tmp"):
        pid = leftover.name[len(f".{path.name}.{host}-"):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


class AtomicFile:
    """A file written under a temporary name beside ``path`` (``.<name>.<host>-<pid>.<random>.tmp``) and renamed to
    ``path`` by :meth:`commit`.

    Created up front, so an unwritable location fails before any work is done; the temporary files a killed earlier
    run left for the same ``path`` are deleted then (:func:`sweep`).
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sweep(path)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise disk_error(err, str(path)) or OSError(
                err.errno, f"cannot write {path} ({err.strerror}); pick a writable location") from None
        os.close(fd)
        self.tmp = Path(name)
        honour_umask(self.tmp)  # mkstemp makes it 0600: the file gets the mode a plain open() would

    def open(self, newline: str | None = None):
        return self.tmp.open("w", encoding="utf-8", newline=newline)

    def commit(self) -> None:
        try:
            with self.tmp.open("rb+") as f:
                os.fsync(f.fileno())
            fault("output:before-rename")
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()
