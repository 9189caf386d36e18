"""The website in a real browser: the whole book is built (warnings as errors), served on
localhost and opened page by page in Debian's headless Chromium, driven by Playwright.

Every page the build produced is checked, so a new chapter's pages are covered without
changing this file: no console errors or failed requests, every equation rendered by
MathJax, every image loaded, every internal link pointing at an existing file and anchor.
The search page must find a word of chapter 01, and every chapter's exercises page must be
its student notebook as shipped (not executed) with a download button for it.
Screenshots go to _build/screenshots/ for people to look at.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "_build" / "screenshots"
SEARCH_WORD = "softmax"  # a word of chapter 01's theory page
# As the machine notes recommend: without the background-networking flags Chromium keeps
# trying to reach Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOT_PAGES = ("_static", "_sources", "_images")  # folders of the site that hold no pages
CHAPTER = re.compile(r"^(\d\d)_(\w+)$")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (/usr/bin/chromium); scripts/setup.sh "
        "installs it with apt-get",
    ),
]


# ---------------------------------------------------------------------------------------
# Building and serving the site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built into a temporary folder, as `make book` builds it; returns its html/."""
    out = tmp_path_factory.mktemp("book")
    cache = ROOT / "_build" / ".jupyter_cache"
    if cache.is_dir():  # reuse the executed pages of an earlier `make book`
        shutil.copytree(cache, out / "_build" / ".jupyter_cache")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cmd = [jupyter_book, "build", ROOT, "--path-output", out, "-W", "-n", "--keep-going"]
    # Without MPLBACKEND (conftest sets Agg) the pages' kernels draw inline, into the page.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the book does not build:\n{proc.stdout[-6000:]}{proc.stderr}"
    print(f"book built in {time.monotonic() - start:.1f} s")
    return out / "_build" / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site served on localhost; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright  # the dev extra installs it

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _is_redirect(path: Path) -> bool:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text.lstrip().lower().startswith('<meta http-equiv="refresh"')


def pages_of(site: Path) -> list[str]:
    """Every HTML page of the built site, as paths relative to its root (not the redirects,
    such as index.html, which test_index_leads_to_the_introduction follows)."""
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if p.relative_to(site).parts[0] not in NOT_PAGES and not _is_redirect(p)
    )


def toc_entries() -> list[tuple[str, list[str]]]:
    """(document, its sections) for every entry of _toc.yml, in order."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    toc = parse_toc_yaml(ROOT / "_toc.yml")
    return [
        (name, [str(item) for subtree in doc.subtrees for item in subtree.items])
        for name, doc in toc.items()
    ]


# ---------------------------------------------------------------------------------------
# Links and anchors, checked against the files of the built site


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.ids.add(value)


@functools.cache
def _ids_in(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def broken_link(site: Path, base: str, href: str) -> str | None:
    """Why an absolute URL inside the site does not resolve, or None if it does."""
    parts = urlsplit(href)
    target = site / unquote(parts.path[len(urlsplit(base).path) :])
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{href}: no such file"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids_in(target):
        return f"{href}: no anchor #{fragment}"
    return None


# ---------------------------------------------------------------------------------------
# One page in the browser

_WAIT_FOR_PAGE = """async () => {
  // MathJax typesets after loading; wait for it, then for every image (lazy ones too).
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
}"""

_INSPECT = """() => {
  const article = document.querySelector("article") || document.body;
  const maths = Array.from(article.querySelectorAll(".math"));
  const plain = article.cloneNode(true);
  plain.querySelectorAll("pre, code, mjx-container, script, style").forEach((e) => e.remove());
  return {
    title: document.title,
    math: maths.length,
    mathRendered: maths.filter((m) => m.querySelector("mjx-container")).length,
    mathErrors: Array.from(document.querySelectorAll("mjx-merror"))
      .map((e) => e.getAttribute("data-mjx-error") || e.textContent),
    text: plain.innerText,
    images: Array.from(document.images).map((img) => ({
      src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
      inArticle: article.contains(img),
    })),
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
  };
}"""

# TeX left as text: \( \[ $$, or a command between single dollars, outside code.
_RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")
# A pipe table's separator row shown as text: Markdown a page's code displayed that was
# not parsed as a table (Sphinx turns "---" into an em dash).
_RAW_TABLE = re.compile(r"\|\s*(?:-{3,}|\u2014+|\u2013+)\s*\|")


@dataclass
class PageReport:
    path: str
    title: str = ""
    math: int = 0
    figures: int = 0
    links: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if not self.problems else f"{len(self.problems)} problem(s)"
        return (
            f"{self.path:32s} {verdict:12s} equations {self.math:4d}  images {self.figures:3d}"
            f"  internal links {self.links:4d}  {self.title}"
        )


def _is_favicon(url: str) -> bool:
    return urlsplit(url).path.endswith("favicon.ico")


def check_page(browser: object, site: Path, base: str, path: str) -> PageReport:
    report = PageReport(path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = report.problems
    host = urlsplit(base).netloc

    def on_console(msg: object) -> None:
        if msg.type == "error" and not _is_favicon(msg.location.get("url", "")):
            problems.append(f"console error: {msg.text}")

    def on_request(request: object) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.netloc != host:
            problems.append(f"request outside the site: {request.url}")

    def on_response(response: object) -> None:
        if response.status >= 400 and not _is_favicon(response.url):
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", on_request)
    page.on(
        "requestfailed",
        lambda r: None if _is_favicon(r.url) else problems.append(f"failed: {r.url} {r.failure}"),
    )
    page.on("response", on_response)
    try:
        page.goto(base + path, wait_until="load", timeout=30_000)
        page.evaluate(_WAIT_FOR_PAGE)
        info = page.evaluate(_INSPECT)
    finally:
        page.close()

    report.title, report.math = info["title"], info["math"]
    if info["mathRendered"] != info["math"]:
        problems.append(f"{info['math'] - info['mathRendered']} of {info['math']} equations "
                        "not rendered by MathJax")  # fmt: skip
    problems += [f"MathJax error: {e}" for e in info["mathErrors"]]
    raw = _RAW_TEX.findall(info["text"])
    if raw:
        problems.append(f"TeX left as text: {raw[:3]}")
    rows = _RAW_TABLE.findall(info["text"])
    if rows:
        problems.append(f"Markdown table left as text: {rows[:2]}")
    report.figures = sum(img["inArticle"] for img in info["images"])
    problems += [f"image not loaded: {img['src']}" for img in info["images"] if not img["ok"]]
    internal = {href for href in info["links"] if href.startswith(base)}
    report.links = len(internal)
    for href in sorted(internal):
        if (why := broken_link(site, base, href)) is not None:
            problems.append(f"broken link: {why}")
    return report


# ---------------------------------------------------------------------------------------
# The tests


def test_every_page_renders_in_chromium(browser: object, site: Path, server: str) -> None:
    pages = pages_of(site)
    built = {p.removesuffix(".html") for p in pages}
    missing = [doc for doc, _ in toc_entries() if doc not in built]
    assert not missing, f"pages of _toc.yml missing from the site: {missing}"

    reports = [check_page(browser, site, server, path) for path in pages]
    summary = "\n".join(r.line() for r in reports)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "pages.txt").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    failures = {r.path: r.problems for r in reports if r.problems}
    assert not failures, "\n".join(
        f"{path}:\n  " + "\n  ".join(problems) for path, problems in failures.items()
    )

    by_path = {r.path: r for r in reports}
    for doc, _ in toc_entries():
        report = by_path[f"{doc}.html"]
        if doc.startswith("book/") and CHAPTER.match(Path(doc).name):
            assert report.math > 0, f"{doc}: a theory page without equations?"
            assert report.figures > 0, f"{doc}: no figure drawn at build time"


def test_index_leads_to_the_introduction(browser: object, server: str) -> None:
    page = browser.new_page()
    try:
        page.goto(server, wait_until="load")
        page.wait_for_url("**/book/intro.html", timeout=10_000)
        assert "attention" in page.inner_text("article").lower()
    finally:
        page.close()


def test_search_finds_a_word_of_a_chapter(browser: object, server: str) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{server}search.html?q={SEARCH_WORD}", wait_until="load")
        results = page.locator("#search-results ul.search li a")
        results.first.wait_for(timeout=20_000)
        hrefs = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
        assert any(h.startswith("book/01_attention.html") for h in hrefs), hrefs
    finally:
        page.close()


def test_each_chapter_has_its_exercises_page_as_shipped(site: Path) -> None:
    """Theory page, then the student notebook: rendered, not executed, downloadable."""
    chapters = [(doc, sections) for doc, sections in toc_entries() if doc.startswith("book/")
                and CHAPTER.match(Path(doc).name)]  # fmt: skip
    assert chapters, "no chapter in _toc.yml"
    for doc, sections in chapters:
        notebook = ROOT / "course" / f"{Path(doc).name}.ipynb"
        if not notebook.exists():
            continue
        exercises = f"course/{notebook.stem}"
        assert sections[:1] == [exercises], (
            f"_toc.yml: {doc} needs its exercises page as first section: `- file: {exercises}`"
        )
        html = (site / f"{exercises}.html").read_text(encoding="utf-8")
        assert "cell_output" not in html, f"{exercises}: the notebook was executed"
        download = f'href="../_sources/{exercises}.ipynb"'
        assert download in html, f"{exercises}: no download button for the notebook"
        shipped = site / "_sources" / f"{exercises}.ipynb"
        assert shipped.read_bytes() == notebook.read_bytes(), f"{exercises}: download differs"
        theory = (site / f"{doc}.html").read_text(encoding="utf-8")
        assert f'href="../{exercises}.html"' in theory, f"{doc} does not link to {exercises}"


def test_screenshots(browser: object, site: Path, server: str) -> None:
    """The first page, a chapter page (top, and its first figure) and its exercises page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = pages_of(site)
    chapter = next(p for p in pages if p.startswith("book/") and CHAPTER.match(Path(p).stem))
    exercises = f"course/{Path(chapter).name}"
    shots = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        for path, name in (
            ("book/intro.html", "first_page"),
            (chapter, Path(chapter).stem),
            (exercises, f"{Path(chapter).stem}_exercises"),
        ):
            if path not in pages:
                continue
            page.goto(server + path, wait_until="load")
            page.evaluate(_WAIT_FOR_PAGE)
            shots.append(SCREENSHOTS / f"{name}.png")
            page.screenshot(path=shots[-1])
            figure = page.locator("article figure img").first
            if path == chapter and figure.count():
                figure.scroll_into_view_if_needed()
                shots.append(SCREENSHOTS / f"{name}_figure.png")
                page.screenshot(path=shots[-1])
    finally:
        page.close()
    assert len(shots) >= 3, shots
    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
