"""The self-check fixtures: a chapter's materialised cases, stored beside the package.

Written by ``make fixtures`` (``python -m autograder.core.fixtures``) from
solutions/, read by the self-check with ``torch.load(weights_only=True)``, so a
student release needs neither solutions/ nor the grading specs, and loading a
fixture can never run code. ``tests/test_fixtures_in_sync.py`` fails when a
fixture no longer matches what solutions/ and the spec produce.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from autograder.core.chapters import CHAPTERS, ChapterInfo, load_spec
from autograder.core.materialize import SELFCHECK_SEED, MaterializedChapter, materialize


class FixtureMissing(FileNotFoundError):
    pass


def load_fixture(info: ChapterInfo) -> MaterializedChapter:
    """The chapter's self-check cases and expected answers."""
    if not info.fixture.exists():
        raise FixtureMissing(
            f"no self-check fixture for chapter {info.key} at {info.fixture}; "
            "instructors create it with `make fixtures`"
        )
    return torch.load(info.fixture, weights_only=True)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_fixture(info: ChapterInfo) -> Path:
    atomic_save(materialize(load_spec(info), SELFCHECK_SEED), info.fixture)
    return info.fixture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the self-check fixtures.")
    parser.add_argument("chapters", nargs="*", help="chapter numbers or slugs (default: all)")
    args = parser.parse_args(argv)
    from autograder.core.chapters import resolve_chapter

    wanted = [resolve_chapter(c) for c in args.chapters] if args.chapters else list(CHAPTERS)
    for info in wanted:
        try:
            load_spec(info)
        except ModuleNotFoundError:
            if args.chapters:
                raise
            continue  # chapter not written yet
        path = write_fixture(info)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
