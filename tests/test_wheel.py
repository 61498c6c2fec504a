"""The wheel is the product: built from this checkout, installed (not editable) into a fresh venv outside the
repository, it indexes the bundled demo and a folder of the user's, answers `ask`, and serves `/search`, from a
working directory that is not the checkout, with its index in the user's data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from semsearch.benchmarks.server import LOOPBACK, free_port, wait_until_loaded
from tests.helpers import GV_RECORDS, REPO_ROOT, jsonl, write_corpus

QUESTION = "energy cooperation in Central Asia"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--no-build-isolation"]
    command += ["--wheel-dir", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=600, cwd=out)
    (built,) = out.glob("semsearch-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed. Its dependencies come from this test run's own environment
    through a folder of links (no download), leaving out this checkout's editable install."""
    root = tmp_path_factory.mktemp("fresh")
    subprocess.run([sys._base_executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)  # type: ignore[attr-defined]
    deps = root / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("semsearch", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    (site,) = (root / "venv" / "lib").glob("python*/site-packages")
    (site / "dependencies.pth").write_text(f"{deps}\n")
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root / "venv"


def user_env(home: Path) -> dict[str, str]:
    """A user's environment: no SEMSEARCH_* settings, their own data folder; the converted model comes from the
    cache this test run already made (the conversion itself is tested elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMSEARCH_", "PYTHON"))}
    env["XDG_DATA_HOME"] = str(home / "data")
    env["HOME"] = str(home)
    return env


def run(venv: Path, args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=cwd, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_wheel_holds_one_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("semsearch-")}
    assert tops == {"semsearch"}
    assert {
        "semsearch/index/reading/splitter.py",
        "semsearch/index/storage/store.py",
        "semsearch/api/static/index.html",
        "semsearch/data/news/china-kazakhstan-cooperation.txt",
        "semsearch/data/news/globalvoices/articles.jsonl",
        "semsearch/benchmarks/expected/load.json",
    } <= set(names)


@pytest.fixture(scope="module")
def demo(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    home = tmp_path_factory.mktemp("home")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = user_env(home)
    done = run(venv, ["semsearch", "index", "--demo"], env, elsewhere)
    assert "Added 408" in done.stdout
    yield env, elsewhere


def test_the_installed_engine_is_the_wheel_not_the_checkout(venv: Path, demo: tuple[dict[str, str], Path]) -> None:
    env, elsewhere = demo
    script = "import semsearch.index.storage.store as s, semsearch.data as d; print(s.__file__); print(d.NEWS)"
    where = run(venv, ["python", "-c", script], env, elsewhere).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert (Path(env["XDG_DATA_HOME"]) / "semsearch" / "index" / "CURRENT").is_file()  # the user's data folder
    assert not list(elsewhere.iterdir())  # nothing written where it ran


def test_demo_then_ask_and_serve_from_anywhere(venv: Path, demo: tuple[dict[str, str], Path]) -> None:
    env, elsewhere = demo
    hits = json.loads(run(venv, ["ask", QUESTION, "-k", "3", "--json"], env, elsewhere).stdout)
    assert hits[0]["article_id"] == "china-kazakhstan-cooperation.txt"
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "semsearch"), "serve", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://{LOOPBACK}:{port}"
        wait_until_loaded(server, base, timeout=600)
        body = httpx.get(f"{base}/search", params={"q": QUESTION, "k": 3}, timeout=60).json()
        assert body["hits"][0]["article_id"] == "china-kazakhstan-cooperation.txt"
        assert "<form" in httpx.get(f"{base}/", timeout=60).text
    finally:
        server.terminate()
        server.wait(timeout=60)
        assert server.stderr is not None
        server.stderr.close()


def test_index_a_folder_of_ones_own(venv: Path, demo: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, elsewhere = demo
    corpus = write_corpus(tmp_path / "mine", {"posts.jsonl": jsonl(GV_RECORDS[:3])})
    index = tmp_path / "my-index"
    assert "Added 3" in run(venv, ["semsearch", "index", str(corpus), "--index", str(index)], env, elsewhere).stdout
    title = str(GV_RECORDS[1]["title"])
    hits = json.loads(run(venv, ["ask", title, "--index", str(index), "-k", "1", "--json"], env, elsewhere).stdout)
    assert hits[0]["article_id"] == GV_RECORDS[1]["_id"]
