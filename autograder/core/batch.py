"""Grade a class: find the submissions, grade them in parallel, write the results atomically.

Layout of the output folder::

    DIR/grades.csv                          one row per student and chapter
    DIR/junit.xml                           with --junit: one test case per exercise
    DIR/grading.log                         for the instructor: each run's warnings and problems
    DIR/mistakes.csv                        recognised mistakes per exercise, and how many made them
    DIR/mistakes_NN_SLUG.png                the same per chapter, as a bar chart
    DIR/students/STUDENT_ID/results.json    Gradescope's format, every chapter of that student
    DIR/students/STUDENT_ID/NN_SLUG.json    the full record of one graded submission (resuming)

Student ids are folder names, chosen by whoever made the folders, so they only
ever name folders under ``DIR/students/``: no id can collide with a file of the
grader's. Every text cell of grades.csv is escaped against spreadsheet formulas.

A submission is read once, safely (:mod:`autograder.core.intake`: no symbolic
links, FIFOs or devices, at most 20 MB); its SHA-256 comes from the bytes read
and a private copy of exactly those bytes is graded. A file that cannot be
taken gets zero points with the reason as every exercise's message.

Each step of one submission (discovery, reading, hashing, grading, writing its
record) fails for that submission alone and is reported; the class goes on.
Every file is written to a temporary name and renamed into place, so a failed
or interrupted run leaves only complete files (and removes its temporary
ones). A record remembers the submission's SHA-256 and the grading seed:
running the same command again grades only what is new, changed or not yet
recorded, and a submission always gets the same score. ``results.json``,
``grades.csv`` and ``junit.xml`` are derived from the records and rebuilt at
the end of every run, so a run that could not write them (a full disk) is
repaired by the next one.

:meth:`ClassGrader.request_stop` (the command line calls it on SIGINT and
SIGTERM) stops a run within seconds: nothing new starts, running submissions
are cancelled and get no record, and the summary of what was graded is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from autograder.core.chapters import CHAPTERS, ChapterInfo, chapter_from_filename, resolve_chapter
from autograder.core.evaluate import ExerciseResult, evaluate
from autograder.core.executors import Executor
from autograder.core.grading import expectations, grade_with_stand_ins
from autograder.core.intake import Refused, Taken, private_copy, read_submission
from autograder.core.materialize import GRADING_SEED
from autograder.core.mistakes import mistakes_csv, write_charts
from autograder.core.runner import JobResult

RECORD_VERSION = 1
SUFFIXES = (".ipynb", ".py")
STUDENTS = "students"  # DIR/students/STUDENT_ID/
LOG = "grading.log"
STOP_GRACE_SECONDS = 5.0  # how long a stop waits for cancelled submissions to return
DUPLICATE = "; graded "  # marks the one kind of problem that is only a warning
_RECORD_NAMES = {f"{c.key}.json" for c in CHAPTERS}
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


@dataclass(frozen=True)
class Submission:
    """One student's file for one chapter; ``root`` is the folder the instructor named.

    No symbolic link is followed from ``root`` down to ``path`` (see
    :func:`autograder.core.intake.read_submission`); ``None`` means the file's folder.
    """

    student_id: str
    chapter: ChapterInfo
    path: Path
    root: Path | None = None


class _Unknown(Exception):
    """A file's chapter cannot be told."""


def _chapter_of(path: Path, root: Path, chapter: ChapterInfo | None) -> ChapterInfo:
    """--chapter, else the file name, else the notebook's ``llm_course`` metadata."""
    if chapter is not None:
        return chapter
    info = chapter_from_filename(path)
    if info is not None:
        return info
    why = "name it NN_SLUG.ipynb or pass --chapter"
    if path.suffix == ".ipynb":
        try:
            meta = json.loads(read_submission(path, root).data).get("metadata", {})
            return resolve_chapter(str(meta.get("llm_course", {}).get("chapter", "")))
        except Refused as exc:
            why = str(exc)
        except RecursionError:
            why = f"its JSON is nested too deeply to read; {why}"
        except Exception:  # noqa: BLE001 - not JSON, no metadata, unknown chapter...
            pass
    raise _Unknown(f"{path}: cannot tell its chapter ({why})")


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _class_folder(folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(student id, file) of every candidate under ``folder``, and the problems.

    ``STUDENT_ID/*.ipynb|*.py``, or nbgrader's ``STUDENT_ID/ASSIGNMENT/*.ipynb``.
    Nothing here follows a symbolic link: a linked student folder is reported; a
    linked file is a candidate, which grading refuses with the reason. Files of
    any type are candidates (a FIFO named 01_attention.ipynb gets its message).
    """
    found: list[tuple[str, Path]] = []
    problems: list[str] = []
    with os.scandir(folder) as it:
        students = sorted(it, key=lambda e: e.name)
    for d in students:
        if d.is_symlink():
            if os.path.isdir(d.path):
                problems.append(
                    f"{d.path}: a symbolic link to a folder, not a student's folder: not "
                    "followed (copy the files in instead)"
                )
            continue
        if not d.is_dir(follow_symlinks=False):
            continue
        try:
            with os.scandir(d.path) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name.startswith("."):
                        continue  # .ipynb_checkpoints and the like
                    with os.scandir(e.path) as inner:
                        for f in sorted(inner, key=lambda e: e.name):
                            if f.name.endswith(".ipynb") and not f.is_dir(follow_symlinks=False):
                                found.append((d.name, Path(f.path)))
                elif Path(e.name).suffix in SUFFIXES:
                    found.append((d.name, Path(e.path)))
                elif e.is_symlink() and chapter_from_filename(e.name) and os.path.isdir(e.path):
                    problems.append(f"{e.path}: a symbolic link to a folder: not followed")
        except OSError as exc:
            problems.append(f"{d.path}: cannot be listed: {exc.strerror or exc}")
    if not found and not problems:
        problems.append(f"{folder}: no STUDENT_ID/*.ipynb inside")
    return found, problems


def _student_of_file(path: Path) -> str:
    folder = Path(os.path.abspath(path)).parent
    if chapter_from_filename(folder.name) is not None:  # nbgrader: STUDENT/ASSIGNMENT/
        folder = folder.parent
    return folder.name or path.stem


def discover(
    paths: Iterable[str | Path], chapter: str | None = None
) -> tuple[list[Submission], list[str]]:
    """Submissions named by ``paths``: notebooks, or folders of ``STUDENT_ID/*.ipynb``.

    Returns the submissions and the problems (a path that does not exist, a
    notebook whose chapter cannot be told, a linked folder...). A file that
    cannot be examined is one problem; discovery goes on with the others.
    Raises :class:`autograder.core.chapters.UnknownChapter` for a bad ``chapter``.
    """
    forced = resolve_chapter(chapter) if chapter else None
    found: list[Submission] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                candidates, more = _class_folder(path)
                problems += more
                root = path
            elif path.exists() or path.is_symlink():
                candidates, root = [(_student_of_file(path), path)], path.parent
            else:
                problems.append(f"{path} does not exist")
                continue
        except OSError as exc:
            problems.append(f"{path}: cannot be listed: {exc.strerror or exc}")
            continue
        for student, nb in candidates:
            try:
                found.append(Submission(student, _chapter_of(nb, root, forced), nb, root))
            except _Unknown as exc:
                problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - one odd file must not stop the class
                problems.append(f"{nb}: could not be examined: {type(exc).__name__}: {exc}")
    # when a student has several files for a chapter, grade a regular file if there is one
    found.sort(key=lambda s: (s.student_id, s.chapter.key, _is_regular(s.path), str(s.path)))
    unique: dict[tuple[str, str], Submission] = {}
    for sub in found:
        key = (sub.student_id, sub.chapter.key)
        if key in unique:
            problems.append(
                f"student {key[0]} has more than one notebook for chapter {key[1]} "
                f"({unique[key].path.name}, {sub.path.name}){DUPLICATE}{sub.path.name}"
            )
        unique[key] = sub
    return list(unique.values()), problems


def is_warning(problem: str) -> bool:
    """Whether a problem of :func:`discover` still left the student's work graded."""
    return DUPLICATE in problem


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    On any failure (a full disk...) the temporary file is removed and the error raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporary_files(out: Path) -> list[Path]:
    """Remove what an earlier run killed mid-write left (``.NAME.XXXX.tmp``); return them."""
    removed = []
    for folder in [out, *(_subfolders(out / STUDENTS))]:
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it if e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for name in names:
            if _TEMPORARY.match(name):
                try:
                    os.unlink(folder / name)
                    removed.append(folder / name)
                except OSError:
                    pass
    return removed


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def sha256(path: Path, root: Path | None = None) -> str:
    """The SHA-256 of a submission as :func:`read_submission` reads it, or why it cannot be."""
    try:
        return read_submission(path, root).sha256
    except Refused as exc:
        return f"refused: {exc}"
    except OSError as exc:
        return f"unreadable: {exc}"


def _record_path(out: Path, sub: Submission) -> Path:
    return out / STUDENTS / sub.student_id / f"{sub.chapter.key}.json"


def _valid_record(record: Any) -> bool:
    try:
        return (
            record["version"] == RECORD_VERSION
            and isinstance(record["student_id"], str)
            and isinstance(record["chapter"], str)
            and isinstance(record["sha256"], str)
            and isinstance(record["score"], int | float)
            and isinstance(record["max_score"], int | float)
            and all(
                isinstance(ex["name"], str)
                and isinstance(ex["score"], int | float)
                and isinstance(ex["max_score"], int | float)
                and isinstance(ex["status"], str)
                and isinstance(ex["message"], str)
                and isinstance(ex["hint"], str)
                for ex in record["exercises"]
            )
            and "seed" in record
        )
    except (KeyError, TypeError):
        return False


def _load_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is missing, unreadable or not a whole record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - whatever is there, it is no record
        return None
    return record if _valid_record(record) else None


def gradescope_results(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Gradescope's results.json for one student: one test per exercise of every chapter.

    Everything in it is shown to the student: grader warnings never go here.
    """
    tests = []
    for rec in records:
        for ex in rec["exercises"]:
            output = ex["message"] + (f"\nHint: {ex['hint']}" if ex["hint"] else "")
            tests.append(
                {
                    "name": f"{rec['chapter']}: {ex['name']}",
                    "score": ex["score"],
                    "max_score": ex["max_score"],
                    "status": "passed" if ex["status"] == "passed" else "failed",
                    "output": output or "passed",
                }
            )
    return {
        "score": sum(r["score"] for r in records),
        "max_score": sum(r["max_score"] for r in records),
        "output": "",
        "tests": tests,
    }


def _all_records(out: Path) -> list[dict[str, Any]]:
    """Every valid record under ``DIR/students/``, in student order."""
    records = []
    for folder in sorted(_subfolders(out / STUDENTS)):
        for name in sorted(_RECORD_NAMES):
            rec = _load_record(folder / name)
            if rec is not None and rec["student_id"] == folder.name:
                records.append(rec)
    return records


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str) -> str:
    """A text cell a spreadsheet shows as text (OWASP's advice against CSV injection).

    A cell starting with = + - @ tab or carriage return gets a leading single
    quote; characters that cannot be written as UTF-8 become escapes.
    """
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return "'" + text if text.startswith(_FORMULA_START) else text


def grades_csv(records: list[dict[str, Any]]) -> str:
    """student_id, chapter, score, max_score, then one column per exercise (chapter order)."""
    order = {c.key: i for i, c in enumerate(CHAPTERS)}
    records = sorted(records, key=lambda r: (r["student_id"], order.get(r["chapter"], 99)))
    columns: list[str] = []
    for rec in sorted(records, key=lambda r: order.get(r["chapter"], 99)):
        for ex in rec["exercises"]:
            if ex["name"] not in columns:
                columns.append(ex["name"])
    buf = io.StringIO()
    # CRLF as RFC 4180 says, and so a cell holding a carriage return is quoted (with "\n"
    # as the terminator the csv module leaves a lone "\r" bare and it starts a new row)
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(
        [spreadsheet_text(c) for c in ("student_id", "chapter", "score", "max_score", *columns)]
    )
    for rec in records:
        by_name = {ex["name"]: ex["score"] for ex in rec["exercises"]}
        row = [
            spreadsheet_text(rec["student_id"]),
            spreadsheet_text(rec["chapter"]),
            _num(rec["score"]),
            _num(rec["max_score"]),
        ]
        writer.writerow(row + [_num(by_name[c]) if c in by_name else "" for c in columns])
    return buf.getvalue()


def _num(x: float) -> str:
    return f"{x:g}"


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a folder name may have them)."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(records: list[dict[str, Any]]) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for rec in records:
        failures = sum(ex["status"] != "passed" for ex in rec["exercises"])
        name = quoteattr(_xml(f"{rec['student_id']}.{rec['chapter']}"))
        lines.append(
            f'  <testsuite name={name} tests="{len(rec["exercises"])}" failures="{failures}">'
        )
        for ex in rec["exercises"]:
            lines.append(f"    <testcase classname={name} name={quoteattr(_xml(ex['name']))}>")
            if ex["status"] != "passed":
                msg = _xml(ex["message"] + (f" Hint: {ex['hint']}" if ex["hint"] else ""))
                lines.append(
                    f"      <failure message={quoteattr(ex['status'])}>{escape(msg)}</failure>"
                )
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


class Interrupted(Exception):
    """Grading of a submission was stopped (:meth:`ClassGrader.request_stop`)."""


@dataclass
class RunReport:
    """What one :meth:`ClassGrader.grade_all` did."""

    graded: list[str] = field(default_factory=list)  # "STUDENT_ID NN_SLUG", graded this run
    already: int = 0  # graded by an earlier run, unchanged
    refused: list[str] = field(default_factory=list)  # given 0: the file could not be taken
    errors: list[str] = field(default_factory=list)  # not graded: internal errors, write errors
    interrupted: int = 0  # not graded because the run was stopped
    stopped: bool = False
    abandoned: int = 0  # cancelled submissions still running when grade_all returned


def _import_charts() -> None:
    """Import what :func:`autograder.core.mistakes.write_charts` draws with (not pyplot,
    which would choose a backend before the charts choose theirs)."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001 - write_charts says what is missing
        pass


def _calls_ahead(executor: Executor, count: int) -> None:
    """Tell an executor that starts children ahead (the isolated one) how many will do."""
    calls_ahead = getattr(executor, "calls_ahead", None)
    if callable(calls_ahead):
        try:
            calls_ahead(count)
        except Exception:  # noqa: BLE001 - only a saving
            pass


class ClassGrader:
    """Grades submissions into an output folder, resuming where an earlier run stopped."""

    def __init__(
        self,
        out: Path,
        executor: Executor,
        seed: int = GRADING_SEED,
        junit: bool = False,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.out, self.executor, self.seed = Path(out), executor, seed
        self.junit, self.stop_grace = junit, stop_grace
        self._lock = threading.Lock()  # records, results.json and the summary are written under it
        self._stop = threading.Event()
        self._report_lock = threading.Lock()
        self._records: dict[tuple[str, str], dict[str, Any]] = {}

    # -- stopping
    def request_stop(self) -> None:
        """Stop :meth:`grade_all` soon: safe to call from a signal handler or another thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _cancel_executor(self) -> float:
        """Cancel what the executor runs; return how long to wait for it to give up.

        An executor without ``cancel()`` cannot be hurried: its results would be
        thrown away anyway, so there is little point in waiting for them.
        """
        cancel = getattr(self.executor, "cancel", None)
        if not callable(cancel):
            return min(self.stop_grace, 1.0)
        try:
            cancel()
        except Exception:  # noqa: BLE001 - stopping goes on regardless
            pass
        return self.stop_grace

    # -- one submission
    def is_done(self, sub: Submission) -> bool:
        """Whether a record of this very file (same bytes, same seed) exists."""
        rec = _load_record(_record_path(self.out, sub))
        if rec is None or rec["seed"] != self.seed:
            return False
        return rec["sha256"] == sha256(sub.path, sub.root)

    def _results(self, sub: Submission, taken: Taken | Refused) -> list[ExerciseResult]:
        chapter = expectations(sub.chapter, self.seed)
        if isinstance(taken, Refused):
            refusal = f"not graded: {taken}"
            runs = [
                JobResult(
                    exercise=ex["name"], status="unreadable", message=refusal, outputs=[], errors=[]
                )
                for ex in chapter["exercises"]
            ]
            return evaluate(chapter["exercises"], runs)
        with private_copy(taken) as copy:
            results = grade_with_stand_ins(sub.chapter, chapter, self.executor, copy)
        if self._stop.is_set():  # whatever came back, it may come from a killed child
            raise Interrupted
        return results

    def grade_one(self, sub: Submission) -> dict[str, Any]:
        """Read, grade and record one submission; raises :class:`Interrupted` when stopped."""
        if self._stop.is_set():
            raise Interrupted
        try:
            taken: Taken | Refused = read_submission(sub.path, sub.root)
        except Refused as exc:
            taken = exc
        results = self._results(sub, taken)
        record = {
            "version": RECORD_VERSION,
            "student_id": sub.student_id,
            "chapter": sub.chapter.key,
            "submission": str(sub.path),
            "sha256": taken.sha256 if isinstance(taken, Taken) else f"refused: {taken}",
            "seed": self.seed,
            "score": sum(r.score for r in results),
            "max_score": sum(r.max_score for r in results),
            "exercises": [asdict(r) for r in results],
        }
        with self._lock:
            if self._stop.is_set():
                raise Interrupted
            atomic_write_text(_record_path(self.out, sub), json.dumps(record, indent=1))
            self._records[(sub.student_id, sub.chapter.key)] = record
            # best effort: both are rebuilt at the end of the run
            try:
                self._write_student(sub.student_id)
                self._write_summary()
            except OSError:
                pass
        return record

    def _write_student(self, student_id: str) -> None:
        """DIR/students/STUDENT_ID/results.json from the records, when it changed."""
        records = [r for (s, _), r in sorted(self._records.items()) if s == student_id]
        path = self.out / STUDENTS / student_id / "results.json"
        text = json.dumps(gradescope_results(records), indent=1)
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write_text(path, text)

    def _write_summary(self) -> None:
        records = list(self._records.values())
        atomic_write_text(self.out / "grades.csv", grades_csv(records))
        atomic_write_text(self.out / "mistakes.csv", mistakes_csv(records))
        if self.junit:
            atomic_write_text(self.out / "junit.xml", junit_xml(records))

    def write_summary(self, charts: bool = False) -> list[str]:
        """Rebuild grades.csv, junit.xml and every student's results.json from the records
        (and, with ``charts``, the mistakes' bar charts).

        Returns the problems (a file that could not be written), one per file.
        """
        problems = []
        with self._lock:
            self._records = {(r["student_id"], r["chapter"]): r for r in _all_records(self.out)}
            for student in sorted({s for s, _ in self._records}):
                try:
                    self._write_student(student)
                except OSError as exc:
                    problems.append(f"{student}: results.json not written: {exc}")
            try:
                self._write_summary()
            except OSError as exc:
                problems.append(f"grades.csv/junit.xml not written: {exc}")
            try:
                if charts:
                    write_charts(list(self._records.values()), self.out)
            except Exception as exc:  # noqa: BLE001 - a chart is not worth a class's grades
                problems.append(f"mistakes_*.png not drawn: {exc}")
        return problems

    def log(self, text: str) -> None:
        """Append a line to DIR/grading.log (for the instructor; failures are ignored)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / LOG, "a", encoding="utf-8", errors="backslashreplace") as f:
                for line in text.splitlines() or [""]:
                    f.write(f"{stamp} {line}\n")
        except OSError:
            pass

    def _safely(self, sub: Submission, report: RunReport) -> None:
        """Grade one submission; whatever happens is noted in ``report``, never raised."""
        what = f"{sub.student_id} {sub.chapter.key}"
        outcome, detail = "graded", ""
        try:
            record = self.grade_one(sub)
        except Interrupted:
            outcome = "interrupted"
        except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the class
            if self._stop.is_set():  # e.g. GradingCancelled from a cancelled executor
                outcome = "interrupted"
            elif isinstance(exc, OSError):  # a full disk, a file that vanished...
                outcome, detail = "error", f"{what}: not graded: {exc}"
            else:
                outcome = "error"
                detail = f"{what}: internal error, not graded:\n{traceback.format_exc()}"
        else:
            if record["sha256"].startswith("refused: "):
                detail = f"{what}: {record['sha256'].removeprefix('refused: ')}"
        with self._report_lock:
            if outcome == "graded":
                report.graded.append(what)
                if detail:
                    report.refused.append(detail)
            elif outcome == "error":
                report.errors.append(detail)
            else:
                report.interrupted += 1

    # -- a class
    def grade_all(
        self, subs: list[Submission], jobs: int = 1, progress: Callable[[int], Any] | None = None
    ) -> RunReport:
        """Grade every submission not graded yet; the report says what happened.

        Returns after :meth:`request_stop` within about ``stop_grace`` seconds,
        even when the executor cannot cancel what it is running.
        """
        report = RunReport()
        self.out.mkdir(parents=True, exist_ok=True)
        remove_temporary_files(self.out)
        todo = []
        for s in subs:
            try:
                done = self.is_done(s)
            except Exception:  # noqa: BLE001 - then grade it again
                done = False
            if done:
                report.already += 1
            else:
                todo.append(s)
        _calls_ahead(self.executor, len(todo))  # their children start while expectations are made
        failed_chapters: set[ChapterInfo] = set()
        for info in sorted({s.chapter for s in todo}, key=lambda c: c.key):
            if self._stop.is_set():
                break
            try:
                expectations(info, self.seed)  # computed once, before the workers start
            except ModuleNotFoundError:
                raise  # no solutions/ here: nothing can be graded
            except Exception:  # noqa: BLE001 - costs that chapter, not the others
                failed_chapters.add(info)
                report.errors.append(
                    f"chapter {info.key}: its grading cases could not be made, nothing of it "
                    f"graded:\n{traceback.format_exc()}"
                )
        todo = [s for s in todo if s.chapter not in failed_chapters]
        chapter_errors = len(report.errors)
        self.write_summary()
        bar = progress(len(todo)) if progress else None
        # the charts' imports (half a second) while the children grade, not after them
        charts_import = threading.Thread(target=_import_charts, name="charts-import", daemon=True)
        charts_import.start()
        work: queue.SimpleQueue[Submission] = queue.SimpleQueue()
        for s in todo:
            work.put(s)
        finished: queue.SimpleQueue[Submission] = queue.SimpleQueue()

        def worker() -> None:
            while not self._stop.is_set():
                try:
                    sub = work.get_nowait()
                except queue.Empty:
                    return
                _calls_ahead(self.executor, work.qsize())  # children started for the rest
                try:
                    self._safely(sub, report)
                finally:
                    finished.put(sub)

        # daemon threads: a stuck executor call cannot keep the process alive after a stop
        threads = [
            threading.Thread(target=worker, name=f"grader-{i}", daemon=True)
            for i in range(max(1, min(jobs, len(todo))))
        ]
        for t in threads:
            t.start()
        remaining, deadline = len(todo), None
        while remaining:
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + self._cancel_executor()
            if deadline is not None and not any(t.is_alive() for t in threads):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                finished.get(timeout=0.1)
            except queue.Empty:
                continue
            remaining -= 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        close = getattr(self.executor, "close", None)  # its spare children are not needed now
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the summary is written regardless
                pass
        report.stopped = self._stop.is_set()
        if report.stopped:
            with self._report_lock:  # what is neither graded nor failed was interrupted
                report.abandoned = sum(t.is_alive() for t in threads)
                failed = len(report.errors) - chapter_errors
                report.interrupted = len(todo) - len(report.graded) - failed
        charts_import.join(timeout=60)
        report.errors += self.write_summary(charts=True)
        return report


# -- the end-of-run summary, for the instructor

# How the sandbox words an exercise that ran out of time, and one whose process ended
# (killed, out of memory, too many processes, an exit): see autograder.core.sandbox.
_TIMEOUT_WORDS = ("took longer than", "ran out of time", "used up its")
_CRASH_WORDS = ("the grading process", "loading the submission", "not run: ")
SUMMARY_EXAMPLES = 8  # submissions named per kind on the console; grading.log has them all


def submission_problems(record: dict[str, Any]) -> dict[str, list[str]]:
    """What went wrong in one graded submission, beyond wrong answers.

    Returns ``{"unreadable": [...], "timed out": [...], "crashed": [...]}``, each a list of
    short descriptions (empty when that did not happen). A submission is unreadable when
    the file could not be taken (refused) or when none of its exercises was found in it.
    """
    found: dict[str, list[str]] = {"unreadable": [], "timed out": [], "crashed": []}
    exercises = record["exercises"]
    if record["sha256"].startswith("refused: "):
        found["unreadable"].append(record["sha256"].removeprefix("refused: "))
        return found
    if exercises and all(ex["status"] == "missing" for ex in exercises):
        found["unreadable"].append(exercises[0]["message"] or "no exercise found in it")
        return found
    for ex in exercises:
        message = ex.get("message") or ""
        if any(words in message for words in _TIMEOUT_WORDS):
            found["timed out"].append(ex["name"])
        elif any(message.startswith(words) or words in message for words in _CRASH_WORDS):
            found["crashed"].append(f"{ex['name']}: {message.splitlines()[0][:120]}")
    return found


def class_summary(out: Path, report: RunReport) -> tuple[list[str], list[str]]:
    """The state of the class in ``out`` after a run: (console lines, grading.log lines).

    Per chapter: the submissions recorded, how many were graded, unreadable, timed out in
    some exercise or crashed in some exercise, and how many could not be graded in this
    run; then which submissions those were, and where the details are. The console names
    at most :data:`SUMMARY_EXAMPLES` submissions per kind; the log names every one.
    """
    records = _all_records(out)
    kinds = ("unreadable", "timed out", "crashed")
    table: dict[str, dict[str, int]] = {}
    named: dict[str, list[str]] = {kind: [] for kind in kinds}
    for rec in records:
        row = table.setdefault(rec["chapter"], {"graded": 0, **dict.fromkeys(kinds, 0)})
        problems = submission_problems(rec)
        row["graded"] += not problems["unreadable"]
        for kind in kinds:
            if problems[kind]:
                row[kind] += 1
                who = f"{rec['student_id']} {rec['chapter']}"
                named[kind].append(f"{who} ({'; '.join(problems[kind])})")
    not_graded = {key: 0 for key in table}
    for error in report.errors:
        key = next((k for k in sorted(table) if f" {k}:" in f" {error}"), None)
        if key is not None:
            not_graded[key] += 1
    head = (
        f"{'chapter':<18} {'graded':>7} {'unreadable':>11} {'timed out':>10} "
        f"{'crashed':>8} {'not graded':>11}"
    )
    lines = [f"the class in {out} ({len(records)} submission(s) recorded):", head]
    for key in sorted(table):
        row = table[key]
        lines.append(
            f"{key:<18} {row['graded']:>7} {row['unreadable']:>11} {row['timed out']:>10} "
            f"{row['crashed']:>8} {not_graded[key]:>11}"
        )
    if not table:
        lines.append("(no submission recorded)")
    console, log = list(lines), list(lines)
    for kind in kinds:
        if not named[kind]:
            continue
        title = f"{kind} ({len(named[kind])}):"
        log += [title] + [f"  {entry}" for entry in named[kind]]
        console += [title] + [f"  {entry[:160]}" for entry in named[kind][:SUMMARY_EXAMPLES]]
        if len(named[kind]) > SUMMARY_EXAMPLES:
            console.append(f"  ... and {len(named[kind]) - SUMMARY_EXAMPLES} more: see {out / LOG}")
    if report.errors:
        console.append(f"not graded in this run ({len(report.errors)}): see {out / LOG}")
    where = [
        f"grades: {out / 'grades.csv'}",
        f"each student's feedback: {out / STUDENTS}/STUDENT_ID/results.json "
        "(full record: NN_SLUG.json beside it)",
        f"warnings and problems: {out / LOG}",
    ]
    return console + where, log
