"""``llm-course release --gradescope DIR``: one Gradescope autograder zip per chapter.

DIR/NN_SLUG-gradescope.zip holds, at its root, what Gradescope's autograder
specification asks for, and everything else the grader needs, so that nothing
is fetched from the network:

    setup.sh          run once when Gradescope builds the image: makes a venv at
                      /autograder/venv from wheels/ (``pip install --no-index``)
                      and unpacks this project (with solutions/ and the grading
                      specs) into /autograder/llm-course, outside the venv
    run_autograder    run for each submission: grades the one file the student
                      uploaded (a notebook or a .py, under any name) for the
                      chapter baked into the zip and writes
                      /autograder/results/results.json
    wheels/           the wheel of this project (the instructor's copy) and the
                      wheels of its dependencies, for this Python version
    chapter.json      the chapter and the Python version the wheels are for

The project lives outside the venv on purpose: the sandbox lets student code
read the venv (it needs torch), and the isolation probe checks that the
project's folder, solutions/ and the specs are out of its reach.

Grading (``python -m autograder.gradescope --chapter NN``, what run_autograder
calls) isolates student code as ``llm-course grade`` does: bubblewrap when it
works, else a subprocess confined by Landlock (Gradescope's containers may not
allow the user namespaces bubblewrap needs). Which one ran goes to stdout and
to a test that only the staff see, never to what the student sees. Where
neither works, nothing of the student's runs: results.json gives 0 points and
says that grading could not run, with the details in the hidden stdout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

from autograder.core.chapters import ChapterInfo, chapter_from_filename, resolve_chapter

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DEPENDENCIES = ("torch", "numpy", "einops", "matplotlib", "tqdm", "nbformat")
GRADESCOPE_ROOT = Path("/autograder")
SUFFIXES = (".ipynb", ".py")
STAFF_TEST = "Grader notes (staff only)"
FAILED_TO_RUN = (
    "Grading could not run on Gradescope's machine. This is not a problem with your "
    "submission: the course staff can see the details and will regrade it. The score "
    "shown until then is a placeholder."
)

SETUP_SH = r"""#!/usr/bin/env bash
# Written by `llm-course release --gradescope`. Gradescope runs it once, as root,
# when it builds the autograder's image. Installs from wheels/ only (no index).
set -euo pipefail
BASE="${LLM_COURSE_GRADESCOPE_ROOT:-/autograder}"  # Gradescope's layout
SOURCE="$BASE/source"  # the zip, unpacked
WANT="$(sed -n 's/.*"python": "\([0-9.]*\)".*/\1/p' "$SOURCE/chapter.json")"
PYTHON="${LLM_COURSE_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in "python$WANT" python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            HAVE="$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
            if [ "$HAVE" = "$WANT" ]; then
                PYTHON="$(command -v "$candidate")"
                break
            fi
        fi
    done
fi
if [ -z "$PYTHON" ] && command -v apt-get >/dev/null 2>&1; then
    # the wheels are for Python $WANT: Ubuntu 22.04 and Debian 12 package it
    apt-get update || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y "python$WANT" "python$WANT-venv" || true
    PYTHON="$(command -v "python$WANT" || true)"
fi
if [ -z "$PYTHON" ]; then
    echo "setup.sh: Python $WANT is needed (the zip's wheels are built for it) and this" \
        "image has no package of it: pick a base image that has (Ubuntu 22.04), or" \
        "build the zip with that image's Python" >&2
    exit 1
fi
if command -v apt-get >/dev/null 2>&1 && ! command -v bwrap >/dev/null 2>&1 &&
    [ -z "${LLM_COURSE_NO_APT:-}" ]; then
    # bubblewrap is the strongest isolation; where it cannot run, Landlock is used
    DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap || true
fi
rm -rf "$BASE/venv" "$BASE/llm-course"
"$PYTHON" -m venv --without-pip "$BASE/venv"
PIP_WHEEL="$(ls "$SOURCE"/wheels/pip-*.whl | head -n 1)"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$BASE/venv/bin/python" "$PIP_WHEEL/pip" install --quiet --no-index \
    --find-links "$SOURCE/wheels" "$PIP_WHEEL"
"$BASE/venv/bin/python" -m pip install --quiet --no-index --find-links "$SOURCE/wheels" \
    -r "$SOURCE/requirements.txt"
"$BASE/venv/bin/python" -m pip install --quiet --no-index --no-deps \
    --target "$BASE/llm-course" "$SOURCE"/wheels/llm_course-*.whl
rm -rf "$BASE/llm-course/bin"  # pip compiled every module above: no submission pays for it
echo "setup.sh: ready ($("$BASE/venv/bin/python" -V), $BASE/venv, $BASE/llm-course)"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Written by `llm-course release --gradescope`: grades /autograder/submission for
# chapter {chapter} and writes /autograder/results/results.json. Nothing is fetched.
# (Gradescope copies this file to /autograder/run_autograder.)
BASE="${{LLM_COURSE_GRADESCOPE_ROOT:-/autograder}}"
cd "$BASE"
export PYTHONPATH="$BASE/llm-course" PYTHONNOUSERSITE=1 MPLBACKEND=Agg
exec "$BASE/venv/bin/python" -s -m autograder.gradescope --chapter {chapter} --root "$BASE"
"""


# -- building the zip ------------------------------------------------------------------------


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def requirements() -> list[str]:
    """The runtime dependencies pinned to the versions installed here (the ones tested)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in RUNTIME_DEPENDENCIES]


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")


def _project_copy(dest: Path) -> Path:
    """The files the project's wheel is built from, copied (the build leaves the repo alone)."""
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("autograder", "solutions", "course"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def build_wheels(dest: Path) -> list[Path]:
    """This project's wheel (solutions and specs included) and every runtime dependency's.

    The dependencies come from pip's usual sources (here the local wheels and
    pip's cache), for this machine's Python; no source distribution is taken.
    """
    dest.mkdir(parents=True, exist_ok=True)
    _pip("download", "--quiet", "--only-binary", ":all:", "--dest", str(dest), "pip")
    _pip("download", "--quiet", "--only-binary", ":all:", "--dest", str(dest), *requirements())
    with tempfile.TemporaryDirectory(prefix="llm-course-wheel-") as tmp:
        src = _project_copy(Path(tmp))
        _pip(
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(dest),
            str(src),
        )
    return sorted(dest.glob("*.whl"))


def _add_text(zf: zipfile.ZipFile, name: str, text: str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def write_zip(info: ChapterInfo, wheels: list[Path], dest: Path) -> Path:
    """DIR/NN_SLUG-gradescope.zip for one chapter, from the wheels of :func:`build_wheels`."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{info.key}-gradescope.zip"
    tmp = path.with_name(f".{path.name}.tmp")
    meta = {"chapter": info.number, "slug": info.slug, "python": _python_version()}
    with zipfile.ZipFile(tmp, "w") as zf:
        _add_text(zf, "setup.sh", SETUP_SH, executable=True)
        _add_text(zf, "run_autograder", RUN_AUTOGRADER.format(chapter=info.number), True)
        _add_text(zf, "chapter.json", json.dumps(meta) + "\n")
        _add_text(zf, "requirements.txt", "\n".join(requirements()) + "\n")
        for wheel in wheels:  # wheels are zips already: stored, not compressed again
            zf.write(wheel, f"wheels/{wheel.name}", compress_type=zipfile.ZIP_STORED)
    os.replace(tmp, path)
    return path


def release_gradescope(out: Path, chapters: list[ChapterInfo]) -> list[Path]:
    """Write one autograder zip per chapter into ``out``; return their paths."""
    with tempfile.TemporaryDirectory(prefix="llm-course-wheels-") as tmp:
        wheels = build_wheels(Path(tmp))
        return [write_zip(info, wheels, Path(out)) for info in chapters]


# -- grading one submission on Gradescope ------------------------------------------------------


class NoSubmission(Exception):
    """The upload holds no single file to grade; the message is for the student."""


def _uploaded_files(folder: Path) -> list[Path]:
    """Every regular file of the upload, leaving out hidden files and macOS's __MACOSX."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def find_submission(folder: Path, info: ChapterInfo) -> Path:
    """The file to grade: the only file uploaded, else the only notebook or .py, else the
    one named after the chapter. Raises :class:`NoSubmission` otherwise."""
    files = _uploaded_files(folder)
    if len(files) == 1:
        return files[0]
    code = [p for p in files if p.suffix in SUFFIXES]
    if len(code) == 1:
        return code[0]
    named = [p for p in code if chapter_from_filename(p) == info]
    if len(named) == 1:
        return named[0]
    notebooks = [p for p in code if p.suffix == ".ipynb"]
    if len(notebooks) == 1:
        return notebooks[0]
    if not files:
        raise NoSubmission("Nothing was uploaded: upload your notebook (or a .py file).")
    names = ", ".join(p.relative_to(folder).as_posix() for p in (code or files)[:10])
    raise NoSubmission(
        f"Upload one notebook or one .py file for chapter {info.key}; found: {names}. "
        f"Name it {info.key}.ipynb if you upload several files."
    )


def _failed_to_run(details: str, started: float) -> dict[str, Any]:
    return {
        "score": 0,
        "execution_time": round(time.monotonic() - started),
        "output": FAILED_TO_RUN,
        "stdout_visibility": "hidden",
        "tests": [_staff_test(f"Grading did not run.\n{details}")],
    }


def _staff_test(text: str) -> dict[str, Any]:
    return {
        "name": STAFF_TEST,
        "score": 0,
        "max_score": 0,
        "status": "passed",
        "output": text,
        "visibility": "hidden",
    }


def grade_upload(root: Path, info: ChapterInfo) -> dict[str, Any]:
    """Grade ``root/submission`` for ``info``; the results.json to write (never raises).

    Prints what the staff may want to know (isolation, problems) to stdout,
    which results.json keeps hidden from the student.
    """
    from autograder.core.batch import ClassGrader, Submission, gradescope_results
    from autograder.core.sandbox import IsolatedExecutor, IsolationUnavailable, Limits

    started = time.monotonic()
    submitted = root / "submission"
    try:
        path = find_submission(submitted, info)
    except NoSubmission as exc:
        print(f"no submission to grade: {exc}")
        return {
            "score": 0,
            "execution_time": round(time.monotonic() - started),
            "output": str(exc),
            "stdout_visibility": "hidden",
            "tests": [_staff_test(f"no submission to grade: {exc}")],
        }
    print(f"grading {path.relative_to(submitted)} for chapter {info.key}")
    try:
        protected = [submitted, root / "results", root / "source"]
        executor = IsolatedExecutor(Limits(), isolation="auto", protected=protected)
        executor.verify()  # before any of the student's code runs
        notes = [f"isolation: {executor.mode}"]
        if executor.warning:
            notes.append(f"warning: {executor.warning}")
        print("\n".join(notes))
        with tempfile.TemporaryDirectory(prefix="llm-course-gradescope-") as out:
            grader = ClassGrader(Path(out), executor)
            record = grader.grade_one(Submission("submission", info, path, submitted))
    except IsolationUnavailable as exc:
        print(f"refusing to grade: {exc}")
        return _failed_to_run(f"Student code cannot be isolated in this container: {exc}", started)
    except Exception:  # noqa: BLE001 - whatever it is, the student must get a results.json
        details = traceback.format_exc()
        print(details)
        return _failed_to_run(details, started)
    results = gradescope_results([record])
    if record["sha256"].startswith("refused: "):
        notes.append(f"submission refused: {record['sha256'].removeprefix('refused: ')}")
    for test in results["tests"]:
        test["visibility"] = "visible"  # messages and hints; the inputs themselves are not in it
    summary = (
        f"Chapter {info.key}: {results['score']:g} of {results['max_score']:g} points. "
        "Grading runs your code on other inputs than the self-check's; each test below says "
        "what went wrong and, for the usual mistakes, gives a hint."
    )
    del results["max_score"]  # not a field of Gradescope's results.json
    results.update(
        output=summary,
        stdout_visibility="hidden",
        execution_time=round(time.monotonic() - started),
    )
    results["tests"].append(_staff_test("\n".join(notes)))
    print(f"score: {results['score']:g}")
    return results


def write_results(root: Path, results: dict[str, Any]) -> Path:
    path = root / "results" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".results.json.tmp")
    tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """What run_autograder calls: grade, write results.json, exit 0 once it is written."""
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    parser.add_argument("--chapter", required=True)
    parser.add_argument("--root", default=str(GRADESCOPE_ROOT))
    args = parser.parse_args(argv)
    root = Path(args.root)
    started = time.monotonic()
    try:
        results = grade_upload(root, resolve_chapter(args.chapter))
    except BaseException:  # noqa: BLE001 - even then, the student gets a results.json
        details = traceback.format_exc()
        print(details)
        results = _failed_to_run(details, started)
    write_results(root, results)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
