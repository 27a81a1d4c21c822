"""Atomic writes: a file or folder is built under a temporary sibling name and renamed into place,
so an interrupted write never leaves a half-written result that a later run would trust."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success rename it to `final`.

    On any exception the temporary folder is removed and `final` is left untouched. If another
    process created `final` meanwhile, its copy is kept and ours is discarded.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if final.exists():  # lost a race: someone else finished first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path next to `final`; on success rename it to `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_arrays(path: Path, arrays: dict) -> None:
    """`arrays` ({name: numpy array}) as an .npz file at `path`, written atomically."""
    import numpy as np

    with atomic_file(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
