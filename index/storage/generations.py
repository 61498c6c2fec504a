"""Commits on disk: how a write becomes current atomically, one writer at a time.

Layout: `ROOT/CURRENT` names the live commit, a folder `ROOT/gen-*/` whose manifest names the live segments
`ROOT/seg-*/` and the rows deleted from each (`segment.py`). A write first writes its new segment (if any), then
a new commit folder, fsyncs both, and switches `CURRENT` with an atomic rename, so a crash at any moment leaves
the previous commit whole and current. The commit before the current one is kept for readers that read
`CURRENT` just before the switch; older ones are removed, and so is every segment the current commit does not
name, once no reader holds it (a reader that finds a segment gone reads the new commit). Every folder a write
makes carries a marker (`folder.py`), removed last, and clean-up removes nothing without one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex

from semsearch.errors import CorruptIndexError, IndexBusyError, NoIndexError
from semsearch.index.storage.folder import CURRENT as CURRENT
from semsearch.index.storage.folder import (
    ENTRY_MARKER,
    claim,
    is_marked,
    mark,
    remove_entry,
    unmake,
    write_errors,
)
from semsearch.index.storage.folder import LOCK as LOCK
from semsearch.index.storage.manifest import MANIFEST, Manifest
from semsearch.index.storage.segment import SEGMENT_PREFIX, fsync, remove_if_unheld

# The next CURRENT, written inside the new generation and renamed over CURRENT, so no temporary file is ever left
# in the index folder itself.
NEXT_CURRENT = "CURRENT.next"


def build_command_hint(root: Path) -> str:
    return f"`semsearch index PATH --index {root}` (or `semsearch index --demo --index {root}` for the bundled news)"


def current_generation(root: Path) -> Path:
    """The live generation folder of the index at `root`."""
    pointer = root / CURRENT
    if os.path.lexists(root) and not root.is_dir():
        raise NoIndexError(f"No index at {root}: it is a file, not an index folder; give --index an index folder")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NoIndexError(f"No index at {root}; build one with {build_command_hint(root)}") from None
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"Cannot read {pointer} ({exc}); rebuild with {build_command_hint(root)}") from None
    generation = root / name
    if not name.startswith("gen-") or "/" in name or not generation.is_dir():
        raise CorruptIndexError(
            f"{pointer} names a generation {name!r} that does not exist; rebuild with {build_command_hint(root)}"
        )
    return generation


def current_name(root: Path) -> str | None:
    """The name `CURRENT` holds now, or None; cheap enough to poll."""
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip() or None
    except (OSError, ValueError):
        return None


@contextmanager
def writer_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the index's single-writer lock; a second writer gets IndexBusyError (at once, or after `wait`
    seconds of trying: a merge waits for the write in progress rather than giving up its work).

    `root` must be a new or empty folder or an index (`folder.claim`); anything else is refused untouched. The
    folders created here for a new index are removed again if no generation was written.
    """
    created = claim(root)
    try:
        with write_errors(root):
            handle = (root / LOCK).open("a")
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexBusyError(
                            f"The index at {root} is being written by another process; try again when it is done"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            handle.close()
    finally:
        if created is not None and not (root / CURRENT).exists():
            unmake(root, created)


def write_generation(root: Path, manifest: Manifest) -> Path:
    """Write a commit naming `manifest.segments` (already written and fsynced) and make it current; call under
    `writer_lock`. Clean-up then removes what no kept commit names and no reader holds."""
    previous = current_name(root)
    folder = staging = root / f"tmp-{token_hex(6)}"
    made = False
    with write_errors(root):
        try:
            staging.mkdir()  # never an existing folder
            made = True
            mark(staging, root_marker=False)
            (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
            generation = _generation_name(root)
            (staging / NEXT_CURRENT).write_text(generation.name + "\n", encoding="utf-8")
            for name in (MANIFEST, ENTRY_MARKER, NEXT_CURRENT):
                fsync(staging / name)
            fsync(staging)
            staging.rename(generation)
            folder = generation
            fsync(root)
            os.replace(generation / NEXT_CURRENT, root / CURRENT)
        except BaseException:
            if made:
                remove_entry(folder)
            raise
    fsync(root)
    remove_stale(root, generation.name, previous)
    return generation


def _generation_name(root: Path) -> Path:
    """A name for the next generation that nothing in `root` has."""
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        generation = root / f"gen-{stamp}-{token_hex(3)}"
        if not os.path.lexists(generation):
            return generation


def remove_stale(root: Path, current: str, previous: str | None) -> None:
    """Drop commits other than the current and the previous one, leftovers of interrupted writes, and segments
    the current commit does not name once no reader holds them (call under the writer lock). A reader that
    read `CURRENT` just before the switch still finds the previous commit, and any segment of it that it holds;
    one that finds a segment gone reads the new commit instead (`store.open_index`). Only folders that carry
    the engine's marker are removed, whatever else is named like them."""
    try:
        named = {s["name"] for s in Manifest.from_file(root / current / MANIFEST).segments}
    except (CorruptIndexError, KeyError, TypeError):
        return  # the commit just written cannot be read back: remove nothing it might name
    keep = {current, previous or current}
    for entry in root.iterdir():
        if entry.name in keep or entry.name in named:
            continue
        if entry.name.startswith("gen-") and is_marked(entry, root_marker=False):
            remove_entry(entry)
        elif entry.name.startswith(("tmp-", SEGMENT_PREFIX)):
            remove_if_unheld(entry)  # a merge writes its segment without the writer lock, holding it meanwhile
