"""Lay the package out as it is installed (`semsearch/index/...`), as links into the checkout, for mypy.

pyproject.toml maps `semsearch.index` to `index/` and so on; an editable install resolves that with an import
hook that mypy cannot follow, so `make lint` points mypy at this tree instead.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(target: Path) -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(target, ignore_errors=True)
    package = target / "semsearch"
    package.mkdir(parents=True)
    for source in (ROOT / mapping["semsearch"]).iterdir():
        if source.suffix == ".py":
            (package / source.name).symlink_to(source)
    for name, folder in mapping.items():
        if name != "semsearch":
            (package / name.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
