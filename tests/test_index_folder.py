"""Where a write may go: the engine writes only into a new or empty folder or an index, removes only what it can
prove it made, and a location it cannot use (a file, someone's folder, a read-only folder, a full disk) is one
clear error that changes nothing."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from semsearch.api.app import create_app
from semsearch.errors import IndexNotWritableError, SemsearchError, StorageWriteError
from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.folder import ENTRY_MARKER, ROOT_MARKER
from semsearch.index.storage.generations import CURRENT, current_generation, current_name, writer_lock
from semsearch.index.storage.manifest import MANIFEST, Manifest
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index, delete_articles
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

BIN = Path(sys.executable).parent
TOKEN = "folder-token-1234"
ARTICLE = "Ferry link\n\nA new ferry line across the Caspian Sea links the ports of Aktau and Baku.\n"
# A snapshot: relative path -> ("dir", None) | ("file", bytes) | ("link", target).
Snapshot = dict[str, tuple[str, bytes | str | None]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` (and `root` itself as "."), with each file's bytes; symlinks are not followed."""
    if not os.path.lexists(root):
        return {}

    def entry(path: Path) -> tuple[str, bytes | str | None]:
        if path.is_symlink():
            return ("link", os.readlink(path))
        return ("dir", None) if path.is_dir() else ("file", path.read_bytes())

    found = {".": entry(root)}
    if root.is_dir() and not root.is_symlink():
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                found[path.relative_to(root).as_posix()] = entry(path)
    return found


def cli(*args: str, limit_file_size: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}

    def limit() -> None:
        if limit_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, resource.RLIM_INFINITY))

    return subprocess.run(
        [str(BIN / "semsearch"), *args], capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", {"ferry.txt": ARTICLE})


@pytest.fixture
def index_copy(gv_settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index")


FOREIGN = ("tmp-notes", "gen-ideas", "CURRENT.mine.tmp", "tmp-0123456789ab", "empty-gen")


def make_foreign(folder: Path) -> None:
    """A folder of someone's own, with names like the engine's."""
    write_corpus(
        folder,
        {
            "tmp-notes/todo.txt": "call the printer",
            "gen-ideas/manifest.json": "not a manifest",
            "CURRENT.mine.tmp": "draft",
            f"tmp-0123456789ab/{ENTRY_MARKER}": "mine",
        },
    )
    (folder / "empty-gen").mkdir()


def test_a_folder_that_is_not_an_index_is_refused_and_left_as_it_was(
    tmp_path: Path, base_settings: Settings, embedder: Embedder, corpus: Path
) -> None:
    folder = tmp_path / "d"
    make_foreign(folder)
    before, around = snapshot(folder), sorted(os.listdir(tmp_path))
    with pytest.raises(IndexNotWritableError, match="not a semsearch index") as refused:
        build_index([corpus], base_settings.replace(index=folder), embedder=embedder)
    assert str(folder) in str(refused.value) and "new or empty folder" in str(refused.value)
    assert snapshot(folder) == before and sorted(os.listdir(tmp_path)) == around


def test_the_cli_refuses_a_folder_a_file_and_a_file_under_the_path(tmp_path: Path, corpus: Path) -> None:
    folder, file = tmp_path / "d", tmp_path / "notes.txt"
    make_foreign(folder)
    file.write_text("my notes")
    before = snapshot(tmp_path)
    assert_one_line_error(cli("index", str(corpus), "--index", str(folder)), str(folder), "not a semsearch index")
    assert_one_line_error(cli("index", str(corpus), "--index", str(file)), str(file), "is a file")
    assert_one_line_error(cli("delete", "ferry.txt", "--index", str(file)), str(file), "is a file")
    assert_one_line_error(cli("index", str(corpus), "--index", str(file / "sub")), str(file), "is a file")
    assert_one_line_error(cli("ask", "ferry", "--index", str(file)), str(file), "is a file")
    assert snapshot(tmp_path) == before


def test_an_empty_folder_becomes_a_marked_index(
    tmp_path: Path, base_settings: Settings, embedder: Embedder, corpus: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    summary = build_index([corpus], base_settings.replace(index=folder), embedder=embedder)
    assert summary.generation is not None
    assert (folder / ROOT_MARKER).is_file() and (folder / summary.generation / ENTRY_MARKER).is_file()


def test_an_index_made_before_the_marker_is_recognised_and_marked(
    index_copy: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    root = index_copy.index
    old = current_generation(root)
    for marker in root.rglob(".semsearch-*"):
        marker.unlink()
    make_foreign(root / "mine")
    (root / "notes.txt").write_text("kept")
    kept = snapshot(root / "mine"), (root / "notes.txt").read_bytes()

    segments = [root / s["name"] for s in Manifest.from_file(old / MANIFEST).segments]
    assert segments and not any((s / ENTRY_MARKER).exists() for s in segments)

    first = build_index(
        [write_corpus(tmp_path / "c1", {"a.jsonl": jsonl(GV_RECORDS[4:5])})], index_copy, embedder=embedder
    )
    assert (root / ROOT_MARKER).is_file() and (root / str(first.generation) / ENTRY_MARKER).is_file()
    assert old.is_dir() and (old / ENTRY_MARKER).is_file()  # the generation before stays for its readers
    assert all((s / ENTRY_MARKER).is_file() for s in segments)  # named by a commit proven its own: marked too
    build_index([write_corpus(tmp_path / "c2", {"b.jsonl": jsonl(GV_RECORDS[5:6])})], index_copy, embedder=embedder)
    assert not old.exists()  # proven the engine's own (CURRENT named it), so removed once two writes old
    assert all(s.is_dir() for s in segments)  # still named by the current commit
    assert (snapshot(root / "mine"), (root / "notes.txt").read_bytes()) == kept
    index = open_index(root)
    try:
        assert len(index.article_ids) == 6
    finally:
        index.close()


def test_only_the_engines_own_leftovers_are_removed(index_copy: Settings, embedder: Embedder, corpus: Path) -> None:
    root = index_copy.index
    make_foreign(root)  # names like the engine's, made by someone else
    foreign = {path: value for path, value in snapshot(root).items() if path.startswith(FOREIGN)}
    crashed = root / "tmp-aaaaaaaaaaaa"  # what a killed writer leaves: a staging folder with the engine's marker
    crashed.mkdir()
    shutil.copy(current_generation(root) / ENTRY_MARKER, crashed / ENTRY_MARKER)
    (crashed / "meta.sqlite").write_bytes(b"half")
    assert build_index([corpus], index_copy, embedder=embedder).generation is not None
    assert not crashed.exists()
    after = snapshot(root)
    assert {path: after.get(path) for path in foreign} == foreign


def test_a_failed_first_write_removes_only_the_folders_it_made(
    tmp_path: Path, base_settings: Settings, embedder: Embedder, corpus: Path
) -> None:
    target = base_settings.replace(index=tmp_path / "new" / "deeper" / "index")

    def interrupt(_total: int):  # type: ignore[no-untyped-def]
        def update(_n: int) -> None:
            raise KeyboardInterrupt

        return update

    with pytest.raises(KeyboardInterrupt):
        build_index([corpus], target, embedder=embedder, progress=interrupt)
    assert sorted(os.listdir(tmp_path)) == ["corpus"]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for this process: permission bits for a user, a read-only bind mount for root (whom
    permission bits do not stop)."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if not path.is_symlink()}
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mount = shutil.which("mount")
    bound = mount and subprocess.run([mount, "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if not bound:
        pytest.skip("running as root without the right to mount: cannot make a folder read-only")
    try:
        remounted = subprocess.run(
            [str(mount), "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True
        ).returncode
        if remounted != 0:
            pytest.skip("running as root without the right to remount read-only")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_index_is_a_clear_error_on_the_cli_and_over_http(index_copy: Settings, corpus: Path) -> None:
    root = index_copy.index
    before = snapshot(root)
    with read_only(root):
        assert_one_line_error(cli("index", str(corpus), "--index", str(root)), str(root), "writ")
        assert_one_line_error(cli("delete", "x", "--index", str(root)), str(root), "writ")
        with TestClient(create_app(index_copy.replace(api_token=TOKEN, reload_seconds=0))) as client:
            response = client.delete(f"/articles/{GV_RECORDS[0]['_id']}", headers={"Authorization": f"Bearer {TOKEN}"})
            assert client.post("/search", json={"query": "press freedom"}).status_code == 200  # reads still work
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "index_not_writable"
    assert str(root) in response.json()["error"]["message"]
    assert snapshot(root) == before


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes fail with EFBIG in this process, as on a full disk (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_full_disk_leaves_the_index_whole_with_one_clear_line(index_copy: Settings, tmp_path: Path) -> None:
    root = index_copy.index
    big = write_corpus(tmp_path / "big", {"a.jsonl": jsonl(GV_RECORDS[:40])})
    before = snapshot(root)
    line = assert_one_line_error(cli("index", str(big), "--index", str(root), limit_file_size=50_000), str(root))
    assert "unchanged" in line
    assert snapshot(root) == before
    fresh = tmp_path / "fresh"
    assert_one_line_error(cli("index", str(big), "--index", str(fresh), limit_file_size=50_000), str(fresh))
    assert not fresh.exists()


def test_a_full_disk_at_the_first_byte_leaves_nothing_that_refuses_the_retry(tmp_path: Path) -> None:
    """Even the marker cannot be written (no byte may be written at all): the folders made for the new index go
    again, so the same command run once there is room builds the index."""
    corpus = write_corpus(tmp_path / "corpus", {"a.jsonl": jsonl(GV_RECORDS[:2])})
    target = tmp_path / "new" / "index"
    assert_one_line_error(cli("index", str(corpus), "--index", str(target), limit_file_size=0), str(target))
    assert not (tmp_path / "new").exists()
    done = cli("index", str(corpus), "--index", str(target))
    assert done.returncode == 0, done.stderr


def test_a_full_disk_is_507_over_http(index_copy: Settings, embedder: Embedder) -> None:
    root = index_copy.index
    before = snapshot(root)
    records = [{"id": f"big-{n}", "title": r["title"], "body": r["text"]} for n, r in enumerate(GV_RECORDS[:30])]
    with TestClient(create_app(index_copy.replace(api_token=TOKEN, reload_seconds=0))) as client:
        with file_size_limit(50_000):
            response = client.post(
                "/articles", json={"articles": records}, headers={"Authorization": f"Bearer {TOKEN}"}
            )
        assert response.status_code == 507, response.text
        assert response.json()["error"]["type"] == "insufficient_storage"
    assert snapshot(root) == before
    # A delete writes only a new commit (tombstones): a disk without room for its manifest refuses it whole.
    room = (current_generation(root) / MANIFEST).stat().st_size // 2
    with file_size_limit(room), pytest.raises(StorageWriteError, match="unchanged"):
        delete_articles(index_copy, [str(GV_RECORDS[0]["_id"])], embedder=embedder)
    assert snapshot(root) == before


def test_a_merge_the_disk_refuses_after_a_write_leaves_the_write_done(index_copy: Settings, embedder: Embedder) -> None:
    """The commit of a delete fits, the merge it calls for (half the rows deleted) does not: the delete is done
    and said to be, the merge is left for later, and no half-written segment is left behind."""
    root = index_copy.index
    gone = [str(r["_id"]) for r in GV_RECORDS[:2]]
    before = open_index(root)
    segments = [r.name for r in before.refs]
    before.close()
    with file_size_limit(20_000):  # room for a commit, not for a segment's vectors
        summary = delete_articles(index_copy, gone, embedder=embedder)
    assert summary.generation == current_name(root) and summary.removed == 2 and summary.merges == []
    assert any("merg" in w and "later" in w for w in summary.warnings), summary.warnings
    index = open_index(root)
    try:
        assert [r.name for r in index.refs] == segments and not set(gone) & set(index.article_ids)
        assert len(index.article_ids) == 2
    finally:
        index.close()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(("tmp-", "seg-"))) == sorted(segments)
    summary = delete_articles(index_copy, [str(GV_RECORDS[2]["_id"])], embedder=embedder)  # room again
    assert len(summary.merges) == 1 and not summary.warnings


def test_the_writer_lock_claims_nothing_it_may_not(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    make_foreign(folder)
    before = snapshot(folder)
    with pytest.raises(IndexNotWritableError), writer_lock(folder):
        pass
    assert snapshot(folder) == before


# Names like the engine's own, its markers among them, and random ones.
NAMES = st.one_of(
    st.sampled_from(
        [
            "tmp-notes",
            "tmp-0123456789ab",
            "gen-ideas",
            "gen-20240101T000000000000Z-abcdef",
            CURRENT,
            "CURRENT.x.tmp",
            "CURRENT.0a1b2c3d.tmp",
            ".lock",
            "seg-20240101T000000000000Z-abcdef",
            "manifest.json",
            "segment.json",
            "meta.sqlite",
            "vectors.npy",
            "postings",
            ROOT_MARKER,
            ENTRY_MARKER,
        ]
    ),
    st.text(alphabet="abcdefgh-_.0123", min_size=1, max_size=8).filter(lambda s: s not in (".", "..")),
)
CONTENTS = st.one_of(
    st.sampled_from([b"", b"gen-ideas\n", b"gen-20240101T000000000000Z-abcdef\n", b"{}"]), st.binary(max_size=40)
)
TREES = st.recursive(CONTENTS, lambda inner: st.dictionaries(NAMES, inner, max_size=4), max_leaves=10)


def materialise(path: Path, tree: bytes | dict[str, object]) -> None:
    if isinstance(tree, bytes):
        path.write_bytes(tree)
        return
    path.mkdir(exist_ok=True)
    for name, child in tree.items():
        materialise(path / name, child)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["tree", "index", "old index", "tree", "absent"]),  # most often a random tree
    tree=TREES,
)
def test_a_write_anywhere_changes_nothing_it_did_not_make(
    kind: str, tree: bytes | dict[str, object], tmp_path: Path, gv_settings: Settings, embedder: Embedder
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        parent = Path(scratch) / "parent"
        parent.mkdir()
        (parent / "neighbour.txt").write_text("next door")
        corpus = write_corpus(Path(scratch) / "corpus", {"ferry.txt": ARTICLE})
        root = parent / "index"
        made: set[str] = set()  # what the engine made before this write
        if kind in ("index", "old index"):
            shutil.copytree(gv_settings.index, root)
            if kind == "old index":
                for marker in root.rglob(".semsearch-*"):
                    marker.unlink()
            made = set(snapshot(root))
            for name, child in tree.items() if isinstance(tree, dict) else []:
                if not os.path.lexists(root / name):
                    materialise(root / name, child)
        elif kind == "tree":
            materialise(root, tree)
        before, around = snapshot(root), snapshot(parent)
        expect_success = kind in ("absent", "index", "old index") or tree == {}
        settings_here = gv_settings.replace(index=root)
        try:
            build_index([corpus], settings_here, embedder=embedder)
        except SemsearchError as exc:
            event(f"{kind}: refused")
            assert not expect_success, f"refused {kind}: {exc}"
            assert snapshot(root) == before
            assert snapshot(parent) == around
            return
        event(f"{kind}: written")
        assert expect_success, f"wrote into {kind} {tree!r}"
        theirs = {path: value for path, value in before.items() if path not in made and path != "."}
        neighbours = {k: v for k, v in around.items() if not k.startswith("index")}
        # A second write retires the first generation, so clean-up runs over everything that was there.
        second = write_corpus(Path(scratch) / "corpus2", {"rain.txt": "Floods\n\nHeavy rain flooded the valley."})
        for write in (None, second):
            if write is not None:
                assert build_index([write], settings_here, embedder=embedder).generation is not None
            after = snapshot(root)
            assert {path: after.get(path) for path in theirs} == theirs
            assert {k: v for k, v in snapshot(parent).items() if not k.startswith("index")} == neighbours
            assert current_name(root) is not None
