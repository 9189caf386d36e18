"""The website in a real browser: the whole book is built (warnings as errors), served on
localhost and opened page by page in Debian's headless Chromium, driven by Playwright.

Every page the build produced is checked, so a new chapter's pages are covered without
changing this file: no console errors or failed requests, every equation rendered by
MathJax, every image loaded, every internal link pointing at an existing file and anchor.
The search page must find a word of chapter 01, and every chapter's exercises page must be
its student notebook as shipped (not executed) with a download button for it. At a
1280 px window, with both sidebars shown, no code cell and no displayed equation is wider
than the page's text (code wraps), and every image has alt text that says what it shows.
The page "For students" offers the student bundle: it is downloaded from the served site,
installed into a fresh venv from a local wheel folder only (no index), and runs chapter
01's self-check there. Screenshots go to _build/screenshots/ for people to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
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
NOT_PAGES = ("_static", "_sources", "_images", "_downloads")  # folders without pages
BUNDLE = ROOT / "_build" / "student" / "llm-course-student.zip"  # scripts/student_bundle.py
# Wheels for the fresh venv of the bundle test, fetched once by `pip download` through
# pip's own configuration; the install itself then reads only this folder (--no-index).
WHEELS = ROOT / ".cache" / "student-wheels"
# An alt text that says what an image shows: a few words, not a file name.
_FILE_NAME = re.compile(r"^\S+\.(png|jpe?g|svg|gif)$", re.IGNORECASE)
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
    # as `make book`: the student bundle first, for the page "For students" to offer
    bundle = [sys.executable, ROOT / "scripts" / "student_bundle.py", "--out", BUNDLE.parent]
    subprocess.run(bundle, cwd=ROOT, check=True, capture_output=True, timeout=600)
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
  // book/_static/course/fit-equations.js then scales equations wider than the text
  if (window.courseEquationsFitted) {
    await window.courseEquationsFitted;
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
      inArticle: article.contains(img), alt: img.getAttribute("alt") || "",
    })),
    // Code cells and displayed equations wider than the text column, or cut off inside
    // their own box (a scroll bar): each must fit, or wrap.
    tooWide: (() => {
      const right = article.getBoundingClientRect().right;
      const boxes = article.querySelectorAll("pre, mjx-container[display='true']");
      return Array.from(boxes).filter((e) => e.offsetParent !== null && (
        e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > right + 1
      )).map((e) => `${e.tagName.toLowerCase()}: ${e.scrollWidth} px in ${e.clientWidth} px: `
        + (e.textContent || "").trim().slice(0, 70));
    })(),
    bothSidebars: !!document.querySelector(".bd-sidebar-primary")
      && getComputedStyle(document.querySelector(".bd-sidebar-primary")).display !== "none"
      && !!document.querySelector(".bd-sidebar-secondary")
      && getComputedStyle(document.querySelector(".bd-sidebar-secondary")).display !== "none",
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
    sidebars: bool = False  # the navigation and the page's contents both shown
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if not self.problems else f"{len(self.problems)} problem(s)"
        return (
            f"{self.path:32s} {verdict:12s} equations {self.math:4d}  images {self.figures:3d}"
            f"  internal links {self.links:4d}  {self.title}"
        )


def _says_what_it_shows(alt: str) -> bool:
    """Alt text of a figure: at least three words, not a file name or a path."""
    alt = alt.strip()
    return len(alt.split()) >= 3 and not _FILE_NAME.match(alt) and "/" not in alt.split()[0]


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
    problems += [
        f"image without alt text that says what it shows: {img['src']} (alt {img['alt']!r})"
        for img in info["images"]
        if img["inArticle"] and not _says_what_it_shows(img["alt"])
    ]
    problems += [f"too wide at 1280 px: {what}" for what in info["tooWide"]]
    report.sidebars = info["bothSidebars"]
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
            assert report.sidebars, f"{doc}: at 1280 px both sidebars should be shown"


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
    """The first page, the students' page, a chapter page (top, and its first figure) and
    its exercises page (top, and its first code cell, wrapped to the text's width)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = pages_of(site)
    chapter = next(p for p in pages if p.startswith("book/") and CHAPTER.match(Path(p).stem))
    exercises = f"course/{Path(chapter).name}"
    shots = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        for path, name in (
            ("book/intro.html", "first_page"),
            ("book/students.html", "students"),
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
            code = page.locator("article div.cell div.highlight pre").first
            if path == exercises and code.count():
                code.scroll_into_view_if_needed()
                shots.append(SCREENSHOTS / f"{name}_code.png")
                page.screenshot(path=shots[-1])
    finally:
        page.close()
    assert len(shots) >= 3, shots
    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"


# ---------------------------------------------------------------------------------------
# The student bundle, as a student gets it: from the site, into a fresh venv


def _student_requirements() -> list[str]:
    """What installing the bundle needs: its build backend and its dependencies, with the
    PyTorch of this venv (so the wheel folder holds the build this machine has)."""
    import zipfile

    import tomllib
    import torch

    with zipfile.ZipFile(BUNDLE) as archive:
        project = tomllib.loads(archive.read("llm-course-student/pyproject.toml").decode())
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    deps = [torch_pin if re.match(r"torch\b", d) else d for d in project["project"]["dependencies"]]
    return [*project["build-system"]["requires"], *deps]


@pytest.fixture(scope="module")
def student_wheels(site: Path) -> Path:
    """WHEELS holding every wheel the bundle needs, fetched once (`pip download`)."""
    wanted = _student_requirements()
    stamp = WHEELS / "requirements.txt"
    if not stamp.is_file() or stamp.read_text(encoding="utf-8").split() != wanted:
        WHEELS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:"]
        proc = subprocess.run(
            [*cmd, "-d", WHEELS, *wanted], capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot fetch the wheels the student bundle needs: {proc.stderr[-2000:]}")
        stamp.write_text("\n".join(wanted) + "\n", encoding="utf-8")
    return WHEELS


def _run(cmd: list[object], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # none of this machine's indexes or find-links
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_student_bundle_from_the_site_installs_offline_and_checks_chapter_01(
    browser: object, server: str, student_wheels: Path, tmp_path: Path
) -> None:
    """Download the zip from "For students", install it into a fresh venv from the wheel
    folder only, and run chapter 01's self-check as shipped, from inside course/, and on
    the notebook with the reference filled in."""
    import zipfile

    import solutions.attention
    from tests.notebook_tools import with_reference

    page = browser.new_page(accept_downloads=True)
    try:
        page.goto(server + "book/students.html", wait_until="load")
        link = page.locator("article a.download", has_text="llm-course-student.zip").first
        with page.expect_download(timeout=60_000) as download:
            link.click()
        zipped = tmp_path / "llm-course-student.zip"
        download.value.save_as(zipped)
    finally:
        page.close()
    assert zipped.read_bytes() == BUNDLE.read_bytes(), "the site offers another zip"
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
        assert not [n for n in names if "/solutions/" in n], "the bundle holds solutions"
        archive.extractall(tmp_path)
    bundle = tmp_path / "llm-course-student"
    venv = tmp_path / "venv"
    start = time.monotonic()
    assert _run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--no-compile"]
    installed = _run([*pip, "--find-links", student_wheels, "."], bundle, timeout=900)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"fresh venv with the bundle in {time.monotonic() - start:.0f} s")
    llm_course = venv / "bin" / "llm-course"

    shipped = _run([llm_course, "check", "01"], bundle)
    assert shipped.returncode == 1, shipped.stdout + shipped.stderr
    assert "0 of 10 exercises pass, 10 not implemented yet" in shipped.stdout, shipped.stdout
    inside = _run([llm_course, "check", "01"], bundle / "course")
    assert inside.returncode == 1 and "10 not implemented yet" in inside.stdout, inside.stderr

    solved = bundle / "course" / "solved.ipynb"
    notebook = with_reference(bundle / "course" / "01_attention.ipynb", solutions.attention)
    solved.write_text(json.dumps(notebook), encoding="utf-8")
    passed = _run([llm_course, "check", "01", "--notebook", solved], bundle)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "10 of 10 exercises pass" in passed.stdout, passed.stdout
