"""Which folders are the engine's own: an index folder carries a marker file, and so does each staging and
generation folder in it. A write goes only into a new or empty folder, a marked one, or an index made before the
marker existed (then marked); anything else is refused before a byte is written. Clean-up removes only marked
entries, so a folder of someone else's that happens to hold `tmp-*`, `gen-*` or `CURRENT.*.tmp` is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from semsearch.errors import CorruptIndexError, IndexNotWritableError, SemsearchError, StorageWriteError
from semsearch.index.storage.manifest import MANIFEST, Manifest

CURRENT = "CURRENT"
LOCK = ".lock"
ROOT_MARKER = ".semsearch-index"
ENTRY_MARKER = ".semsearch-generation"
_ROOT_TEXT = b"semsearch index: semsearch writes and removes only its own entries here (those it has marked)\n"
_ENTRY_TEXT = b"semsearch generation: made by semsearch, removed by it when no longer current\n"
_SHOWN = 5
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)
# OSErrors of a write that the file system refused; numpy reports a short write with no errno.
_REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, None)


def claim(root: Path) -> Path | None:
    """Make sure a write may go into `root`, creating and marking the folder as needed; refuses a file, a folder
    that is not an index and is not empty, and a folder this user cannot write, changing nothing.

    Returns the outermost folder this call created (so a write that ends without a generation can remove what it
    made), or None when `root` was there already.
    """
    created = _make_folder(root)
    try:
        _claim_existing(root, created)
    except BaseException:
        if created is not None:  # a refused or failed claim leaves no folder behind to refuse the retry
            unmake(root, created)
        raise
    return created


def _claim_existing(root: Path, created: Path | None) -> None:
    with write_errors(root):
        if created is None and not is_marked(root, root_marker=True):
            if not root.is_dir():
                raise IndexNotWritableError(
                    f"The index location {root} is a file, not a folder; give --index a new or empty folder, "
                    "or an existing index"
                )
            if not _is_unmarked_index(root) and any(root.iterdir()):
                shown = sorted(p.name for p in root.iterdir())
                listed = ", ".join(shown[:_SHOWN]) + (f" and {len(shown) - _SHOWN} more" if len(shown) > _SHOWN else "")
                raise IndexNotWritableError(
                    f"The folder {root} is not a semsearch index and is not empty (it holds {listed}); semsearch "
                    "writes nothing there so as to leave what it holds untouched. Give --index (SEMSEARCH_INDEX) a "
                    "new or empty folder, or an existing index"
                )
            for entry in root.iterdir():  # an index from before the markers: its generations are proven its own,
                if entry.name.startswith("gen-") and _has_manifest(entry):  # and so are the segments they name
                    mark(entry, root_marker=False)
                    for segment in _segments_named(root, entry):
                        mark(segment, root_marker=False)
        mark(root, root_marker=True)


def mark(folder: Path, root_marker: bool, hold: bool = False) -> int | None:
    """Write the marker into a folder the engine made; a file of that name already there is left as it is.

    With `hold`, the marker is locked shared before a byte of it is written and its descriptor returned open:
    clean-up (`segment.remove_if_unheld`) then never removes the folder until the caller closes it."""
    name, text = (ROOT_MARKER, _ROOT_TEXT) if root_marker else (ENTRY_MARKER, _ENTRY_TEXT)
    try:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    try:
        if hold:
            fcntl.flock(fd, fcntl.LOCK_SH)
        if os.write(fd, text) != len(text):
            raise OSError(errno.ENOSPC, "short write", str(folder / name))
    except BaseException:
        os.close(fd)
        (folder / name).unlink(missing_ok=True)  # a partial marker would make the folder neither ours nor empty
        raise
    if hold:
        return fd
    os.close(fd)
    return None


def remove_entry(folder: Path) -> None:
    """Remove a folder the engine made inside an index, its marker last: a removal cut short (a kill) leaves a
    folder that clean-up still knows as its own (or, killed between the marker and the folder, an empty one)."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.name == ENTRY_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
    with contextlib.suppress(OSError):
        (folder / ENTRY_MARKER).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def is_marked(folder: Path, root_marker: bool) -> bool:
    """Whether `folder` holds the engine's marker, byte for byte; an entry inside an index counts only when it is
    a folder itself, not a link to one (the index folder may be a link)."""
    name, text = (ROOT_MARKER, _ROOT_TEXT) if root_marker else (ENTRY_MARKER, _ENTRY_TEXT)
    try:
        kind = folder.stat() if root_marker else folder.lstat()
        if not stat.S_ISDIR(kind.st_mode) or not stat.S_ISREG((folder / name).lstat().st_mode):
            return False
        return (folder / name).read_bytes() == text
    except OSError:
        return False


def unmake(root: Path, created: Path) -> None:
    """Remove the folders a claim created, if no generation was written there: only the engine's own files are
    removed, and a folder is removed only once empty."""
    for name in (ROOT_MARKER, LOCK):
        (root / name).unlink(missing_ok=True)
    folder = root
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == created:
            return
        folder = folder.parent


@contextmanager
def write_errors(root: Path) -> Iterator[None]:
    """Raise a failure the file system gave a write to the index at `root` as the user-facing error; any other
    failure goes on as it is."""
    try:
        yield
    except Exception as exc:
        error = write_error(root, exc)
        if error is None:
            raise
        raise error from None


def write_error(root: Path, exc: Exception) -> SemsearchError | None:
    """The user-facing error for a write to the index at `root` that the file system refused, or None when `exc`
    is some other failure."""
    if isinstance(exc, OSError) and exc.errno in _NOT_ALLOWED:
        where = f" ({exc.filename})" if exc.filename else ""
        return IndexNotWritableError(
            f"Cannot write the index at {root}: {exc.strerror or exc}{where}; make the folder writable for this "
            "user, or give --index another folder. The index is unchanged."
        )
    refused = isinstance(exc, OSError) and exc.errno in _REFUSED
    if isinstance(exc, sqlite3.OperationalError):
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
            return IndexNotWritableError(
                f"Cannot write the index at {root}: {exc}; make the folder writable for this user, or give "
                "--index another folder. The index is unchanged."
            )
        refused = name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))
    if not refused:
        return None
    return StorageWriteError(
        f"Writing the index at {root} failed: {exc}. The disk may be full, or a quota or file size limit reached; "
        "the index is unchanged. Free some space (or raise the limit) and run the write again."
    )


def _make_folder(root: Path) -> Path | None:
    """Create `root` and any missing parents; the outermost folder created, or None if `root` was there."""
    if os.path.lexists(root):
        return None
    outermost = root
    while not os.path.lexists(outermost.parent) and outermost.parent != outermost:
        outermost = outermost.parent
    try:
        with write_errors(root):
            root.mkdir(parents=True)
    except FileExistsError:
        if root.is_dir():  # another writer made it just now
            return None
        raise _not_a_folder(root) from None
    except NotADirectoryError:
        raise _not_a_folder(root) from None
    return outermost


def _not_a_folder(root: Path) -> IndexNotWritableError:
    above = next((p for p in (root, *root.parents) if os.path.lexists(p) and not p.is_dir()), root)
    return IndexNotWritableError(
        f"The index location {root} cannot be made: {above} is a file, not a folder; give --index a folder path"
    )


def _is_unmarked_index(root: Path) -> bool:
    """An index from before the markers: `CURRENT` names a generation folder with a manifest that loads."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return False
    return name.startswith("gen-") and "/" not in name and _has_manifest(root / name)


def _segments_named(root: Path, generation: Path) -> list[Path]:
    """The segment folders (real folders, not links) that the manifest of `generation` names."""
    try:
        entries = Manifest.from_file(generation / MANIFEST).segments
    except CorruptIndexError:
        return []
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    return [
        root / n
        for n in names
        if isinstance(n, str)
        and n.startswith("seg-")
        and "/" not in n
        and (root / n).is_dir()
        and not (root / n).is_symlink()
    ]


def _has_manifest(folder: Path) -> bool:
    try:
        return not folder.is_symlink() and folder.is_dir() and bool(Manifest.from_file(folder / MANIFEST))
    except CorruptIndexError:
        return False
