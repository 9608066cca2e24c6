"""The configuration reference (docs/config.md) is the config dataclasses' own: every key documented, and the file
written from them as they are now."""

from dreamsmith.core.jobs import JOBS
from dreamsmith.core.settings.config_docs import DOC, reference, rows


def test_every_config_key_says_what_it_does():
    missing = [f"{kind.name}: {key}" for kind in JOBS.values() for key, _, text in rows(kind.config_class) if not text]
    assert not missing, f"config keys without a docstring line: {missing[:10]}"


def test_the_reference_is_not_stale():
    assert DOC.read_text(encoding="utf-8") == reference(), (
        "docs/config.md is stale: run `python -m dreamsmith.core.settings.config_docs` and commit it")
