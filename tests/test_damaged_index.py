"""A damaged, missing or unreadable part of an index (CURRENT, a commit's manifest or its entry for a segment, any
file of a segment) is a CorruptIndexError that names it: on open, at `ask` (one line, no traceback) and at server
start (503 `corrupt_index`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsearch.api.app import create_app
from semsearch.errors import CorruptIndexError, NoIndexError
from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.folder import ENTRY_MARKER
from semsearch.index.storage.generations import CURRENT, current_generation
from semsearch.index.storage.manifest import MANIFEST
from semsearch.index.storage.postings import FREQS, INDPTR, LENGTHS, ROWS, TERMS
from semsearch.index.storage.segment import (
    ARTICLE_VECTORS,
    GRAPH,
    IDS,
    METADATA,
    OWNERS,
    POSTINGS_DIR,
    SEGMENT_MANIFEST,
    VECTORS,
)
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus
from tests.test_api import assert_error
from tests.test_index_folder import assert_one_line_error, cli

POSTINGS = tuple(f"{POSTINGS_DIR}/{name}" for name in (TERMS, INDPTR, ROWS, FREQS, LENGTHS))
# Every file of a segment: its record first, then what the record lists (the graph only past the ANN threshold).
SEGMENT_FILES = (SEGMENT_MANIFEST, VECTORS, IDS, OWNERS, ARTICLE_VECTORS, METADATA, *POSTINGS)
GRAPHED_FILES = (*SEGMENT_FILES, GRAPH)


@pytest.fixture(scope="module")
def graphed_index(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings, embedder: Embedder) -> Path:
    """The four posts with an HNSW graph: an ANN threshold under the index's size."""
    root = tmp_path_factory.mktemp("graphed")
    settings = base_settings.replace(index=root / "index", ann_threshold=20)
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(GV_RECORDS[:4])})], settings, embedder=embedder)
    return settings.index


@pytest.fixture(scope="module")
def other_index(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings, embedder: Embedder) -> Path:
    """Two other posts in an index of their own: its passage ids start at 0 too."""
    root = tmp_path_factory.mktemp("other")
    settings = base_settings.replace(index=root / "index")
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(GV_RECORDS[4:6])})], settings, embedder=embedder)
    return settings.index


@pytest.fixture
def index_copy(gv_settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index", reload_seconds=0)


def commit_file(root: Path) -> Path:
    return current_generation(root) / MANIFEST


def only_segment(root: Path) -> Path:
    [entry] = json.loads(commit_file(root).read_text())["segments"]
    return root / entry["name"]


def edit_commit(root: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """Rewrite the current commit's manifest as `change` leaves it."""
    path = commit_file(root)
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00\xffnot what was written\n" * 4)


def test_the_files_damaged_here_are_every_file_of_a_segment(index_copy: Settings, graphed_index: Path) -> None:
    """The lists below cover the layout: a file added to segments must be added to them too."""
    for root, files in ((index_copy.index, SEGMENT_FILES), (graphed_index, GRAPHED_FILES)):
        folder = only_segment(root)
        listed = json.loads((folder / SEGMENT_MANIFEST).read_text())["files"]
        assert {SEGMENT_MANIFEST, *listed} == set(files)
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert on_disk == {*files, ENTRY_MARKER}


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", [MANIFEST, *GRAPHED_FILES])
def test_any_damaged_file_is_named(graphed_index: Path, tmp_path: Path, name: str, how: str) -> None:
    root = tmp_path / "index"
    shutil.copytree(graphed_index, root)
    path = commit_file(root) if name == MANIFEST else only_segment(root) / name
    damage(path, how)
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        open_index(root)
    if how == "garbage":  # without checksums, reading the file fails, and names it (postings load as one folder)
        named = path.parent if name in POSTINGS else path
        with pytest.raises(CorruptIndexError, match=re.escape(str(named))):
            open_index(root, verify=False)


@pytest.mark.parametrize("name", [*SEGMENT_FILES, "."])
def test_a_missing_segment_file_or_folder_is_named(index_copy: Settings, name: str) -> None:
    folder = only_segment(index_copy.index)
    path = folder / name
    if name == ".":
        shutil.rmtree(folder)
        path = folder
    else:
        path.unlink()
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        open_index(index_copy.index)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from([MANIFEST, *GRAPHED_FILES]),
    where=st.floats(0.0, 1.0, exclude_max=True),
    how=st.sampled_from(["flip", "cut", "append"]),
    byte=st.integers(0, 255),
)
def test_any_change_to_any_byte_is_caught_and_named(
    graphed_index: Path, tmp_path: Path, name: str, where: float, how: str, byte: int
) -> None:
    """One byte changed, the file cut short anywhere, or a byte appended: loading refuses, naming the file."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        root = Path(scratch) / "index"
        shutil.copytree(graphed_index, root)
        path = commit_file(root) if name == MANIFEST else only_segment(root) / name
        data = bytearray(path.read_bytes())
        at = int(where * len(data))
        if how == "flip":
            data[at] ^= byte or 1
        elif how == "cut":
            del data[at:]
        else:
            data.append(byte)
        if name == MANIFEST:  # the commit has no checksum of its own: only a change that breaks it is caught
            try:
                changed = json.loads(data.decode("utf-8"))
            except ValueError:
                changed = None
            if changed == json.loads(path.read_text()):
                return  # whitespace, or a change JSON reads the same way
        path.write_bytes(bytes(data))
        try:
            index = open_index(root)
        except CorruptIndexError as exc:
            named = str(path if name != MANIFEST else path.parent) in str(exc)  # a commit: its manifest or folder
            assert named, f"{name} ({how} at {at}): {exc}"
        else:
            index.close()
            assert name == MANIFEST, f"a damaged {name} ({how} at {at}) was loaded"


def add_segment_of(root: Path, other: Path) -> Path:
    """Copy the only segment of `other` into `root` and name it in the current commit, counts and all."""
    folder = root / only_segment(other).name
    shutil.copytree(only_segment(other), folder)
    [entry] = json.loads(commit_file(other).read_text())["segments"]

    def change(manifest: dict[str, Any]) -> None:
        manifest["segments"].append(entry)
        manifest["counts"]["articles"] += entry["articles"]
        manifest["counts"]["passages"] += entry["passages"]

    edit_commit(root, change)
    return folder


def test_two_segments_claiming_one_passage_id_are_refused(index_copy: Settings, other_index: Path) -> None:
    folder = add_segment_of(index_copy.index, other_index)
    with pytest.raises(CorruptIndexError, match=re.escape(f"{folder} holds passage ids another segment holds")):
        open_index(index_copy.index)


def test_one_segment_named_twice_is_refused(index_copy: Settings) -> None:
    path = edit_commit(index_copy.index, lambda m: m["segments"].append(dict(m["segments"][0])))
    with pytest.raises(CorruptIndexError, match="names one segment twice") as refused:
        open_index(index_copy.index)
    assert str(path) in str(refused.value)


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        manifest["segments"][0][key] = value

    return change


def _count(key: str, by: int) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        manifest["segments"][0][key] += by

    return change


# A commit's entry for its segment, damaged, and what the error names: "commit" the commit's manifest (or, where
# only the sum disagrees, its folder), "segment" the segment folder, "record" the segment's segment.json, or a
# folder the entry names.
ENTRIES = [
    pytest.param(_set("name", "seg-20240101T000000000000Z-abcdef"), "seg-20240101T000000000000Z-abcdef", id="gone"),
    pytest.param(_set("name", "../elsewhere"), "../elsewhere", id="outside the index"),
    pytest.param(_set("name", 5), "commit", id="a name that is not a string"),
    pytest.param(_set("checksum", "0" * 64), "record", id="another checksum"),
    pytest.param(_count("passages", 1), "segment", id="another passage count"),
    pytest.param(_count("articles", -1), "segment", id="another article count"),
    pytest.param(_set("deleted", [999]), "commit", id="a deleted row the segment lacks"),
    pytest.param(_set("deleted", [-1]), "commit", id="a negative deleted row"),
    pytest.param(_set("deleted", [0]), "sum", id="a deleted row the counts do not know"),
    pytest.param(lambda m: m["segments"][0].pop("checksum"), "commit", id="no checksum"),
    pytest.param(lambda m: m.update(segments=[]), "sum", id="no segment"),
    pytest.param(lambda m: m.update(segments=[5]), "commit", id="an entry that is not an object"),
]


@pytest.mark.parametrize(("change", "named"), ENTRIES)
def test_a_damaged_segment_entry_is_named(
    index_copy: Settings, change: Callable[[dict[str, Any]], None], named: str
) -> None:
    root = index_copy.index
    segment = only_segment(root)
    path = edit_commit(root, change)
    with pytest.raises(CorruptIndexError) as refused:
        open_index(root)
    message = str(refused.value)
    expected = {
        "commit": str(path),
        "sum": str(path.parent),
        "segment": str(segment),
        "record": str(segment / SEGMENT_MANIFEST),
    }.get(named, str(root / named))
    assert expected in message and "rebuild" in message, message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("counts", 5),
        ("counts", {}),
        ("files", []),
        ("vector_index", "flat"),
        ("dimension", "384"),
        ("model", None),
        ("segments", None),
        ("segments", {}),
        ("last_merge", []),
    ],
)
def test_a_manifest_with_a_field_of_the_wrong_kind_is_named(index_copy: Settings, field: str, value: object) -> None:
    path = edit_commit(index_copy.index, lambda m: m.update({field: value}))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        open_index(index_copy.index)


def test_a_damaged_pointer_is_named(index_copy: Settings, tmp_path: Path) -> None:
    pointer = index_copy.index / CURRENT
    segment = only_segment(index_copy.index).name
    pointer.write_bytes(b"\xff\xfe gen")
    with pytest.raises(CorruptIndexError, match=re.escape(str(pointer))):
        open_index(index_copy.index)
    for name in ("gen-missing", "../gen-elsewhere", segment):  # CURRENT names commits, never segments
        pointer.write_text(name + "\n")
        with pytest.raises(CorruptIndexError, match=re.escape(repr(name))) as refused:
            open_index(index_copy.index)
        assert str(pointer) in str(refused.value)
    file = tmp_path / "file"
    file.write_text("not an index")
    with pytest.raises(NoIndexError, match="is a file"):
        open_index(file)


@pytest.mark.parametrize("how", ["garbage", "chmod 000", "read fails"])
def test_ask_on_an_unreadable_metadata_file_is_one_line(index_copy: Settings, how: str) -> None:
    path = only_segment(index_copy.index) / METADATA
    if how == "garbage":
        damage(path, how)
    elif how == "chmod 000":
        if os.geteuid() == 0:
            pytest.skip("permission bits do not stop root; 'read fails' covers an unreadable file")
        path.chmod(0)
    else:
        path.unlink()
        path.symlink_to("/proc/self/mem")  # a regular file whose every read from offset 0 fails with EIO
    line = assert_one_line_error(cli("ask", "press freedom", "--index", str(index_copy.index)), str(path))
    assert "Traceback" not in line


def test_ask_on_a_missing_segment_is_one_line(index_copy: Settings) -> None:
    folder = only_segment(index_copy.index)
    shutil.rmtree(folder)
    assert_one_line_error(cli("ask", "press freedom", "--index", str(index_copy.index)), str(folder))


def test_a_server_started_on_a_truncated_vector_file_answers_corrupt_index(index_copy: Settings) -> None:
    path = only_segment(index_copy.index) / VECTORS
    damage(path, "truncated")
    with TestClient(create_app(index_copy)) as client:
        for response in (
            client.post("/search", json={"query": "press freedom"}),
            client.get("/search", params={"q": "press freedom"}),
            client.get("/stats"),
        ):
            assert str(path) in assert_error(response, 503, "corrupt_index")
