"""Cheap checks of the website's sources that fail in a second, long before the book build
of test_website would: labels shared by two pages break `make book` (warnings are errors)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# MyST targets `(name)=`, figure/code `name:` options and math `:label:` share one namespace.
LABEL = re.compile(
    r"^\((?P<a>[\w-]+)\)=\s*$"  # (name)=
    r"|^\s*:?name:\s*(?P<b>[\w-]+)\s*$"  # name: / :name:
    r"|:label:\s*(?P<c>[\w-]+)"  # :label:
)
NOT_LABELS = {"python3"}  # the kernelspec's `name: python3` in each page's front matter


def labels_of(page: Path) -> list[str]:
    found = []
    for line in page.read_text(encoding="utf-8").splitlines():
        m = LABEL.search(line)
        if m:
            name = m.group("a") or m.group("b") or m.group("c")
            if name not in NOT_LABELS:
                found.append(name)
    return found


def test_no_label_is_defined_on_two_pages() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for page in sorted((ROOT / "book").glob("*.md")):
        for label in labels_of(page):
            where[label].append(page.name)
    clashes = {label: pages for label, pages in where.items() if len(pages) > 1}
    assert not clashes, f"labels defined more than once (prefix them with the chapter): {clashes}"


def test_figure_labels_carry_their_chapter_number() -> None:
    wrong = []
    for page in sorted((ROOT / "book").glob("[0-9][0-9]_*.md")):
        for label in labels_of(page):
            if label.startswith("fig") and not label.startswith(f"fig{page.name[:2]}-"):
                wrong.append(f"{page.name}: {label}")
    assert not wrong, f"figure labels should read figNN-...: {wrong}"
