"""The documentation cannot drift: docs/configuration.md is the output of `semsearch config --markdown`, every
relative link in README.md and docs/ points at a file that exists, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from semsearch.api.cli import main
from tests.helpers import REPO_ROOT

DOCS = REPO_ROOT / "docs"
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 150
# [text](target) and ![alt](target), after code blocks and code spans are taken out.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)


def test_configuration_md_is_the_config_commands_output() -> None:
    result = CliRunner().invoke(main, ["config", "--markdown"])
    assert result.exit_code == 0, result.output
    written = (DOCS / "configuration.md").read_text(encoding="utf-8")
    stale = "docs/configuration.md is stale: run `semsearch config --markdown > docs/configuration.md`"
    assert written == result.output, stale


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO_ROOT).as_posix() for p in PAGES])
def test_relative_links_point_at_files(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#", 1)[0]).exists()]
    assert missing == [], f"{page.name} links to files that do not exist: {missing}"


def test_the_link_check_sees_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "See [the API](docs/http-api.md#errors), ![plot](results/a.png) and [site](https://example.org).\n"
        "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n[anchor](#top)\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["docs/http-api.md#errors", "results/a.png"]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
