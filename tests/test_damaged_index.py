"""A damaged or unreadable file of a generation is a CorruptIndexError that names it: on open, at `ask` (one line,
no traceback) and at server start (503 `corrupt_index`)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.errors import CorruptIndexError, NoIndexError
from semsearch.index.storage.generations import CURRENT, DATA_FILES, METADATA, VECTORS, current_generation
from semsearch.index.storage.lexical import LEXICAL_DIR
from semsearch.index.storage.manifest import MANIFEST
from semsearch.index.storage.store import open_index
from semsearch.settings import Settings
from tests.test_api import assert_error
from tests.test_index_folder import assert_one_line_error, cli

FILES = (MANIFEST, *DATA_FILES)


@pytest.fixture
def index_copy(gv_settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index", reload_seconds=0)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00\xffnot what was written\n" * 4)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", FILES)
def test_any_damaged_file_is_named(index_copy: Settings, name: str, how: str) -> None:
    path = current_generation(index_copy.index) / name
    damage(path, how)
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        open_index(index_copy.index)
    if how == "garbage":  # without checksums, reading the file fails, and names it (BM25 loads as one folder)
        named = path.parent if name.startswith(f"{LEXICAL_DIR}/") else path
        with pytest.raises(CorruptIndexError, match=re.escape(str(named))):
            open_index(index_copy.index, verify=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("counts", 5), ("counts", {}), ("files", []), ("vector_index", "flat"), ("dimension", "384"), ("model", None)],
)
def test_a_manifest_with_a_field_of_the_wrong_kind_is_named(index_copy: Settings, field: str, value: object) -> None:
    path = current_generation(index_copy.index) / MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(dict(manifest, **{field: value})))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        open_index(index_copy.index)


def test_a_damaged_pointer_is_named(index_copy: Settings, tmp_path: Path) -> None:
    pointer = index_copy.index / CURRENT
    pointer.write_bytes(b"\xff\xfe gen")
    with pytest.raises(CorruptIndexError, match=re.escape(str(pointer))):
        open_index(index_copy.index)
    file = tmp_path / "file"
    file.write_text("not an index")
    with pytest.raises(NoIndexError, match="is a file"):
        open_index(file)


@pytest.mark.parametrize("how", ["garbage", "chmod 000", "read fails"])
def test_ask_on_an_unreadable_metadata_file_is_one_line(index_copy: Settings, how: str) -> None:
    path = current_generation(index_copy.index) / METADATA
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


def test_a_server_started_on_a_truncated_vector_file_answers_corrupt_index(index_copy: Settings) -> None:
    path = current_generation(index_copy.index) / VECTORS
    damage(path, "truncated")
    with TestClient(create_app(index_copy)) as client:
        for response in (
            client.post("/search", json={"query": "press freedom"}),
            client.get("/search", params={"q": "press freedom"}),
            client.get("/stats"),
        ):
            assert str(path) in assert_error(response, 503, "corrupt_index")
