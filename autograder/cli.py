"""``llm-course``: the course's command line (also ``python -m autograder``).

- ``llm-course check CHAPTER [--notebook PATH]``: the student's self-check.
- ``llm-course grade PATH... [--chapter C] --out DIR [--jobs N]``: grade a class
  against the reference on fresh inputs, isolated (instructors; needs solutions/).
- ``llm-course release --out DIR``: the nbgrader course folder and the student bundle;
  ``--gradescope DIR``: one Gradescope autograder zip per chapter (see autograder.gradescope).

Exit status: 0 when everything passed (check) or every submission was graded
(grade), 1 when an exercise fails or a submission could not be graded, 2 for a
usage error; ``grade`` stopped by SIGINT or SIGTERM exits 130 or 143 after
writing what it graded (running it again grades the rest).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autograder.core.chapters import UnknownChapter, resolve_chapter
from autograder.core.fixtures import FixtureMissing
from autograder.core.report import format_report

USAGE_ERROR = 2


def default_notebook(notebook: str, cwd: Path | None = None) -> Path:
    """Where a chapter's notebook (``course/NN_SLUG.ipynb``) is, seen from ``cwd``.

    From the course's top folder that is ``course/NN_SLUG.ipynb``; from inside course/
    it is ``NN_SLUG.ipynb``; from deeper folders, the first folder above with
    ``course/NN_SLUG.ipynb`` in it. Returns the shortest of these that exists, as a path
    relative to ``cwd`` when it can, or ``course/NN_SLUG.ipynb`` when none does.
    """
    here = Path.cwd() if cwd is None else Path(cwd)
    relative = Path(notebook)
    candidates = [here / relative, here / relative.name]
    candidates += [folder / relative for folder in here.parents]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate.relative_to(here)
            except ValueError:
                return candidate
    return relative


def _cmd_check(args: argparse.Namespace) -> int:
    from autograder.selfcheck import check_submission

    info = resolve_chapter(args.chapter)
    path = Path(args.notebook) if args.notebook else default_notebook(info.notebook)
    if not path.exists():
        print(f"llm-course check: {path} does not exist", file=sys.stderr)
        if not args.notebook:
            print(
                f"  (looked for {info.notebook} here and in the folders above, and for "
                f"{path.name} here; run from the course's folder or pass --notebook PATH)",
                file=sys.stderr,
            )
        return USAGE_ERROR
    results = check_submission(info, path)
    print(format_report(f"Self-check of chapter {info.key} ({info.title}): {path}", results))
    print("(Grading uses other inputs than this self-check.)")
    return 0 if all(r.passed for r in results) else 1


class _StopOnSignals:
    """While active, SIGINT and SIGTERM call ``target`` (once) instead of killing the process.

    A second signal ends the process at once. Remembers the first signal's number.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._target: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def set_target(self, target: Callable[[], None]) -> None:
        self._target = target
        if self.signum is not None:
            target()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum
        if self._target is not None:
            self._target()

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _cmd_grade(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autograder.core.batch import ClassGrader, class_summary, discover, is_warning
    from autograder.core.sandbox import IsolatedExecutor, IsolationUnavailable, Limits

    out = Path(args.out)

    def say(text: str) -> None:
        print(f"llm-course grade: {text}", file=sys.stderr)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        say(f"cannot create the output folder {out}: {exc.strerror or exc}")
        return USAGE_ERROR
    with _StopOnSignals() as stopper:
        subs, problems = discover(args.paths, args.chapter)
        limits = Limits(exercise_seconds=args.exercise_timeout)
        # the probe checks that student code can reach none of these (nor solutions/)
        protected = [p if p.is_dir() else p.parent for p in map(Path, args.paths)] + [out]
        try:
            executor = IsolatedExecutor(limits, isolation=args.isolation, protected=protected)
            if subs and callable(getattr(executor, "verify", None)):
                executor.verify()  # once, before any student's code runs
        except IsolationUnavailable as exc:
            say(str(exc))
            return USAGE_ERROR
        grader = ClassGrader(out, executor, junit=args.junit)
        stopper.set_target(grader.request_stop)
        grader.log(f"grading {' '.join(map(str, args.paths))} (isolation: {executor.mode})")
        if executor.warning:  # for the instructor only: never in a student's results.json
            say(f"warning: {executor.warning}")
            grader.log(f"warning: {executor.warning}")
        for problem in problems:
            say(problem)
            grader.log(problem)

        def progress(n: int) -> Any:
            print(
                f"grading {n} submissions ({len(subs) - n} already graded) into {out} "
                f"with {args.jobs} worker(s), isolation: {executor.mode}",
                file=sys.stderr,
            )
            return tqdm(total=n, unit="submission", desc="grading", file=sys.stderr)

        report = grader.grade_all(subs, jobs=args.jobs, progress=progress)

    for refusal in report.refused:
        say(f"refused (0 points): {refusal}")
        grader.log(f"refused (0 points): {refusal}")
    for error in report.errors:
        say(error)
        grader.log(error)
    if executor.warning:
        say(f"warning: {executor.warning}")
    summary = (
        f"{len(report.graded)} submission(s) graded in this run, {report.already} unchanged "
        f"since an earlier run, {len(report.errors)} error(s)"
    )
    grader.log(summary)
    print(f"wrote {out / 'grades.csv'} ({summary})")
    console, logged = class_summary(out, report)
    print("\n".join(console))
    grader.log("\n".join(logged))
    if stopper.signum is not None:
        name = signal.Signals(stopper.signum).name
        message = (
            f"stopped by {name}: {len(report.graded)} submission(s) graded in this run, "
            f"{report.interrupted} not graded yet; run the same command again to grade the rest"
        )
        say(message)
        grader.log(message)
        return 128 + stopper.signum
    ungraded = [p for p in problems if not is_warning(p)]
    return 1 if report.errors or ungraded else 0


def _cmd_release(args: argparse.Namespace) -> int:
    from autograder.core.chapters import resolve_chapter
    from autograder.release import present_chapters, release

    if not args.out and not args.gradescope:
        print("llm-course release: give --out DIR, --gradescope DIR or both", file=sys.stderr)
        return USAGE_ERROR
    chapters = None
    if args.chapters:
        try:
            chapters = [resolve_chapter(c) for c in args.chapters.split(",") if c.strip()]
        except (KeyError, ValueError) as error:
            print(f"llm-course release: {error}", file=sys.stderr)
            return USAGE_ERROR
    if args.out:
        try:
            sources, bundle = release(Path(args.out), chapters)
        except (KeyError, ValueError) as error:
            print(f"llm-course release: {error}", file=sys.stderr)
            return USAGE_ERROR
        for path in sources:
            print(f"nbgrader source: {path}")
        print(f"student bundle: {bundle} (install with `pip install {bundle}`)")
        print(f"next: cd {Path(args.out) / 'nbgrader'} && nbgrader generate_assignment NN_SLUG")
    if args.gradescope:
        from autograder.gradescope import release_gradescope

        present = present_chapters()
        wanted = chapters if chapters is not None else present
        missing = [c.key for c in wanted if c not in present]
        if missing:
            print(
                f"llm-course release: chapters {', '.join(missing)} not present here",
                file=sys.stderr,
            )
            return USAGE_ERROR
        print("building the Gradescope autograders (this project's wheel and its dependencies')")
        try:
            zips = release_gradescope(Path(args.gradescope), wanted)
        except RuntimeError as error:
            print(f"llm-course release: {error}", file=sys.stderr)
            return 1
        for path in zips:
            size = path.stat().st_size / 1e6
            print(f"Gradescope autograder: {path} ({size:.0f} MB; upload it as the zip)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="self-check a notebook or .py file")
    check.add_argument("chapter", help="chapter number or slug, e.g. 01 or attention")
    check.add_argument("--notebook", help="notebook or .py file (default: course/NN_SLUG.ipynb)")
    check.set_defaults(func=_cmd_check)
    grade = sub.add_parser("grade", help="grade submissions against the reference")
    grade.add_argument(
        "paths", nargs="+", help="submitted notebooks, or folders holding STUDENT_ID/*.ipynb"
    )
    grade.add_argument("--chapter", help="chapter (default: from the notebook's name or metadata)")
    grade.add_argument(
        "--out",
        required=True,
        help="output folder: grades.csv, students/STUDENT_ID/results.json, grading.log",
    )
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    grade.add_argument("--junit", action="store_true", help="also write DIR/junit.xml")
    grade.add_argument(
        "--isolation",
        choices=["auto", "bwrap", "process", "none"],
        default="auto",
        help="auto: bubblewrap when it works here, else a subprocess confined by Landlock; "
        "none: no isolation, for code you trust",
    )
    grade.add_argument(
        "--exercise-timeout",
        type=float,
        default=60.0,
        help="wall-time limit of one exercise, in seconds",
    )
    grade.set_defaults(func=_cmd_grade)
    release = sub.add_parser("release", help="write the nbgrader course and the student bundle")
    release.add_argument("--out", help="output folder for the nbgrader course and the bundle")
    release.add_argument(
        "--gradescope",
        metavar="DIR",
        help="also (or only) write one Gradescope autograder zip per chapter into DIR",
    )
    release.add_argument(
        "--chapters",
        help="comma-separated chapters to release, e.g. 01,02 (default: all present); the "
        "course model ships only with chapter 05 or later",
    )
    release.set_defaults(func=_cmd_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return args.func(args)
    except (UnknownChapter, FixtureMissing) as exc:
        print(f"llm-course {args.command}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except ModuleNotFoundError as exc:
        if args.command == "check" or exc.name not in ("solutions", "autograder.attention"):
            raise
        print(
            f"llm-course {args.command}: needs the course's solutions/ and grading specs "
            f"(instructors' copy): {exc}",
            file=sys.stderr,
        )
        return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
