"""``llm-course``: the course's command line (also ``python -m autograder``).

- ``llm-course check CHAPTER [--notebook PATH]``: the student's self-check.
- ``llm-course grade PATH... [--chapter C] [--out DIR]``: grade submissions against
  the reference on fresh inputs (instructors; needs solutions/).

Exit status: 0 when everything passed (check) or every submission was graded
(grade), 1 when an exercise fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder.core.chapters import UnknownChapter, chapter_from_filename, resolve_chapter
from autograder.core.fixtures import FixtureMissing
from autograder.core.report import format_report

USAGE_ERROR = 2


def _cmd_check(args: argparse.Namespace) -> int:
    from autograder.selfcheck import check_submission

    info = resolve_chapter(args.chapter)
    path = Path(args.notebook or info.notebook)
    if not path.exists():
        print(f"llm-course check: {path} does not exist", file=sys.stderr)
        if not args.notebook:
            print("  (run from the course folder, or pass --notebook PATH)", file=sys.stderr)
        return USAGE_ERROR
    results = check_submission(info, path)
    print(format_report(f"Self-check of chapter {info.key} ({info.title}): {path}", results))
    print("(Grading uses other inputs than this self-check.)")
    return 0 if all(r.passed for r in results) else 1


def _cmd_grade(args: argparse.Namespace) -> int:
    from autograder.core.grading import grade_submission

    status = 0
    for raw in args.paths:
        path = Path(raw)
        info = resolve_chapter(args.chapter) if args.chapter else chapter_from_filename(path)
        if info is None:
            print(f"llm-course grade: cannot tell the chapter of {path}; pass --chapter")
            status = USAGE_ERROR
            continue
        results = grade_submission(path, info)
        print(format_report(f"Grade of {path} (chapter {info.key})", results))
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="self-check a notebook or .py file")
    check.add_argument("chapter", help="chapter number or slug, e.g. 01 or attention")
    check.add_argument("--notebook", help="notebook or .py file (default: course/NN_SLUG.ipynb)")
    check.set_defaults(func=_cmd_check)
    grade = sub.add_parser("grade", help="grade submissions against the reference")
    grade.add_argument("paths", nargs="+", help="submitted notebooks")
    grade.add_argument("--chapter", help="chapter (default: from the notebook's file name)")
    grade.set_defaults(func=_cmd_grade)
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


if __name__ == "__main__":
    raise SystemExit(main())
