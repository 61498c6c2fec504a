from __future__ import annotations

from pathlib import Path

import pytest

from semsearch.errors import ConfigError
from semsearch.settings import Settings, describe


def test_environment_and_overrides() -> None:
    env = {
        "SEMSEARCH_INDEX": "/tmp/x",
        "SEMSEARCH_EMBED_TITLE": "false",
        "SEMSEARCH_THREADS": "3",
        "SEMSEARCH_IGNORE": "*.bak, drafts",
    }
    settings = Settings.from_env(env, threads=1, index=None)
    assert settings.index == Path("/tmp/x")
    assert settings.embed_title is False
    assert settings.threads == 1
    assert settings.ignore == ("*.bak", "drafts")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEMSEARCH_THREADS": "many"}, "SEMSEARCH_THREADS='many' is not allowed: use an integer"),
        ({"SEMSEARCH_THREADS": "0"}, "SEMSEARCH_THREADS=0 is not allowed: use an integer >= 1"),
        ({"SEMSEARCH_EMBED_TITLE": "maybe"}, "use true or false"),
        ({"SEMSEARCH_INDEX": " "}, "SEMSEARCH_INDEX is empty"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_every_setting_is_described() -> None:
    rows = describe()
    assert {key for key, _, _ in rows} >= {"SEMSEARCH_INDEX", "SEMSEARCH_MODEL", "SEMSEARCH_EMBED_TITLE"}
    assert all(help_text for _, _, help_text in rows)
