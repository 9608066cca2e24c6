"""The configuration reference (``docs/config.md``), written from the config dataclasses themselves: every key of
every job's config, its default and the docstring's words for it.
``python -m dreamsmith.core.settings.config_docs`` writes it; a test fails when the file is stale."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` sections of a Google-style class docstring and its bases' as ``{name: text}`` (one line
    each; the class's own words win)."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        out.update(_own_attribute_docs(base))
    return out


def attribute_words(cls: type, name: str) -> str:
    """The docstring's words for attribute ``name`` of ``cls`` as part of a sentence (a command's help, a message):
    without markup, a lower-case start and no final full stop."""
    text = attribute_docs(cls)[name].replace("``", "").rstrip(".")
    return text[:1].lower() + text[1:]


def _own_attribute_docs(cls: type) -> dict[str, str]:
    doc = cls.__dict__.get("__doc__") or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    name = None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^\s{4,8}([\w, ]+):\s*(.*)$", line)
        if m and not line.startswith(" " * 12):
            name = m.group(1)
            for key in name.split(","):
                out[key.strip()] = m.group(2).strip()
        elif name and line.strip():
            for key in name.split(","):
                out[key.strip()] = (out[key.strip()] + " " + line.strip()).strip()
    return out


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def rows(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, default, description)`` of every leaf of the config ``cls``, nested configs flattened with dots."""
    docs = attribute_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        value = _default(f)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.append((key, "", docs.get(f.name, "")))
            out += rows(type(value), key + ".")
        else:
            out.append((key, repr(value), docs.get(f.name, "")))
    return out


def reference() -> str:
    """The whole reference as Markdown."""
    from ..jobs import JOBS

    parts = ["# Configuration reference", "",
             "Every key a job's config takes (`--config FILE` on the command line, a job's `config` in a batch or",
             "from the add-on), with the dataclass default and what it does. A preset overrides some of them",
             "(`core/settings/presets.py`; the GPU presets' settings beside threestudio's in `recipe.md`). Unknown",
             "keys are errors. Written by `python -m dreamsmith.core.settings.config_docs` from the docstrings; a test",
             "fails when it is stale.", ""]
    for kind in JOBS.values():
        parts += [f"## {kind.name}", "", f"`{kind.config_class.__name__}`: {kind.help}.", "",
                  "| key | default | what it does |", "|---|---|---|"]
        for key, default, text in rows(kind.config_class):
            text = text.replace("|", "\\|")
            parts.append(f"| `{key}` | {'`' + default + '`' if default else ''} | {text} |")
        parts.append("")
    return "\n".join(parts)


def main() -> int:
    """Write ``docs/config.md``."""
    DOC.write_text(reference(), encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
