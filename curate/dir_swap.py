"""Putting a finished folder in place of an existing one, so that its readers never find it missing.

On Linux, `renameat2(RENAME_EXCHANGE)` swaps the two folders in one step: a reader (a trainer polling
the output, `curate verify`) sees the old folder or the new one at the path, never nothing. Where the
call is missing (other systems, glibc before 2.28) or the file system refuses it (some network file
systems), two renames do the swap: then, between them, the path is briefly missing, and a process
killed there leaves the old folder as `.<name>.old-*` (put back by the next build, see
`curate.build`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# what renameat2 answers where the system or the file system cannot exchange: try the two renames
_NOT_SUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _renameat2() -> Callable[..., int] | None:
    """libc's `renameat2`, or None where there is none (not Linux, or an older C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:  # no C library to load (a static or unusual build): fall back to renames
        return None


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot (nothing moved)."""
    call = _renameat2()
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NOT_SUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_dir(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`, replacing what is there; the old folder is deleted. Readers of
    `target` see the old folder or the new one, never half of either (and, where `exchange` works,
    never no folder)."""
    if not target.exists():
        os.rename(new, target)
        return
    if exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_tree(path: Path) -> None:
    """`shutil.rmtree(path)` (errors ignored) that a Ctrl-C does not cut short: one Ctrl-C can arrive as
    two KeyboardInterrupts (polars raises one from its own signal check, Python another for the same
    signal), the second inside the cleanup of the first. The folder is removed, then the interrupt is
    raised again; a third Ctrl-C during the removal stops it (the next build removes what is left)."""
    interrupted = False
    for _ in range(2):  # a try, and one more after an interrupt
        try:
            shutil.rmtree(path, ignore_errors=True)
            break
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
