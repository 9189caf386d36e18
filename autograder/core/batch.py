"""Grade a class: find the submissions, grade them in parallel, write the results atomically.

Layout of the output folder::

    DIR/grades.csv                 one row per student and chapter
    DIR/STUDENT_ID/results.json    Gradescope's format, every chapter of that student
    DIR/STUDENT_ID/NN_SLUG.json    the full record of one graded submission (resuming)
    DIR/junit.xml                  optional, one test case per exercise

Every file is written to a temporary name and renamed into place, so an
interrupted run leaves only complete files. A record remembers the submission's
SHA-256 and the grading seed: running the same command again grades only what is
new or changed, and a submission always gets the same score.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from autograder.core.chapters import CHAPTERS, ChapterInfo, chapter_from_filename, resolve_chapter
from autograder.core.evaluate import ExerciseResult, evaluate
from autograder.core.executors import Executor
from autograder.core.grading import expectations
from autograder.core.materialize import GRADING_SEED, jobs_for

RECORD_VERSION = 1


@dataclass(frozen=True)
class Submission:
    student_id: str
    chapter: ChapterInfo
    path: Path


def _chapter_of(path: Path, chapter: str | None) -> ChapterInfo | None:
    """--chapter, else the file name, else the notebook's ``llm_course`` metadata."""
    if chapter:
        return resolve_chapter(chapter)
    info = chapter_from_filename(path)
    if info is None and path.suffix == ".ipynb":
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
            info = resolve_chapter(str(meta.get("llm_course", {}).get("chapter", "")))
        except (ValueError, OSError, AttributeError):
            return None
    return info


def discover(
    paths: Iterable[str | Path], chapter: str | None = None
) -> tuple[list[Submission], list[str]]:
    """Submissions named by ``paths``: notebooks, or folders of ``STUDENT_ID/*.ipynb``.

    Returns the submissions and the problems (a path that does not exist, a
    notebook whose chapter cannot be told).
    """
    found: list[Submission] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # STUDENT_ID/*.ipynb, or nbgrader's STUDENT_ID/ASSIGNMENT/*.ipynb
            candidates = sorted(
                p
                for d in sorted(path.iterdir())
                if d.is_dir()
                for p in [*d.iterdir(), *d.glob("*/*.ipynb")]
                if p.suffix in (".ipynb", ".py") and p.is_file()
            )
            if not candidates:
                problems.append(f"{path}: no STUDENT_ID/*.ipynb inside")
        elif path.exists():
            candidates = [path]
        else:
            problems.append(f"{path} does not exist")
            continue
        for nb in candidates:
            info = _chapter_of(nb, chapter)
            if info is None:
                problems.append(
                    f"{nb}: cannot tell its chapter (name it NN_SLUG.ipynb or pass --chapter)"
                )
                continue
            folder = nb.parent
            if chapter_from_filename(folder.name) is not None:  # nbgrader: STUDENT/ASSIGNMENT/
                folder = folder.parent
            student = folder.name or nb.stem
            found.append(Submission(student, info, nb))
    keys = [(s.student_id, s.chapter.key) for s in found]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(
            f"student {key[0]} has more than one notebook for chapter {key[1]}; graded the last one"
        )
    unique = {(s.student_id, s.chapter.key): s for s in found}
    return list(unique.values()), problems


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
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


def sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def _record_path(out: Path, sub: Submission) -> Path:
    return out / sub.student_id / f"{sub.chapter.key}.json"


def _load_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("version") == RECORD_VERSION else None


def gradescope_results(records: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """Gradescope's results.json for one student: one test per exercise of every chapter."""
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
        "output": note,
        "tests": tests,
    }


def _all_records(out: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(out.glob("*/*.json")):
        if path.name != "results.json":
            rec = _load_record(path)
            if rec is not None:
                records.append(rec)
    return records


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
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student_id", "chapter", "score", "max_score", *columns])
    for rec in records:
        by_name = {ex["name"]: ex["score"] for ex in rec["exercises"]}
        row = [rec["student_id"], rec["chapter"], _num(rec["score"]), rec["max_score"]]
        writer.writerow(row + [_num(by_name[c]) if c in by_name else "" for c in columns])
    return buf.getvalue()


def _num(x: float) -> str:
    return f"{x:g}"


def junit_xml(records: list[dict[str, Any]]) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for rec in records:
        failures = sum(ex["status"] != "passed" for ex in rec["exercises"])
        name = quoteattr(f"{rec['student_id']}.{rec['chapter']}")
        lines.append(
            f'  <testsuite name={name} tests="{len(rec["exercises"])}" failures="{failures}">'
        )
        for ex in rec["exercises"]:
            lines.append(f"    <testcase classname={name} name={quoteattr(ex['name'])}>")
            if ex["status"] != "passed":
                msg = ex["message"] + (f" Hint: {ex['hint']}" if ex["hint"] else "")
                lines.append(
                    f"      <failure message={quoteattr(ex['status'])}>{escape(msg)}</failure>"
                )
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


class ClassGrader:
    """Grades submissions into an output folder, resuming where an earlier run stopped."""

    def __init__(
        self,
        out: Path,
        executor: Executor,
        seed: int = GRADING_SEED,
        note: str = "",
        junit: bool = False,
    ) -> None:
        self.out, self.executor, self.seed, self.note = Path(out), executor, seed, note
        self.junit = junit
        self._lock = threading.Lock()

    def is_done(self, sub: Submission) -> bool:
        rec = _load_record(_record_path(self.out, sub))
        return bool(rec) and rec["sha256"] == sha256(sub.path) and rec["seed"] == self.seed

    def grade_one(self, sub: Submission) -> dict[str, Any]:
        chapter = expectations(sub.chapter, self.seed)
        results: list[ExerciseResult] = evaluate(
            chapter["exercises"], self.executor(sub.path, jobs_for(chapter))
        )
        record = {
            "version": RECORD_VERSION,
            "student_id": sub.student_id,
            "chapter": sub.chapter.key,
            "submission": str(sub.path),
            "sha256": sha256(sub.path),
            "seed": self.seed,
            "score": sum(r.score for r in results),
            "max_score": sum(r.max_score for r in results),
            "exercises": [asdict(r) for r in results],
        }
        with self._lock:
            atomic_write_text(_record_path(self.out, sub), json.dumps(record, indent=1))
            self._write_student(sub.student_id)
            self.write_summary()
        return record

    def _write_student(self, student_id: str) -> None:
        records = [r for r in _all_records(self.out) if r["student_id"] == student_id]
        results = gradescope_results(records, self.note)
        atomic_write_text(self.out / student_id / "results.json", json.dumps(results, indent=1))

    def write_summary(self) -> None:
        records = _all_records(self.out)
        atomic_write_text(self.out / "grades.csv", grades_csv(records))
        if self.junit:
            atomic_write_text(self.out / "junit.xml", junit_xml(records))

    def grade_all(
        self, subs: list[Submission], jobs: int = 1, progress: Callable[[int], Any] | None = None
    ) -> list[str]:
        """Grade every submission not graded yet; return the internal errors (normally none)."""
        self.out.mkdir(parents=True, exist_ok=True)
        todo = [s for s in subs if not self.is_done(s)]
        for info in {s.chapter for s in todo}:
            expectations(info, self.seed)  # computed once, before the workers start
        errors: list[str] = []
        bar = progress(len(todo)) if progress else None
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(self.grade_one, s): s for s in todo}
            for future in as_completed(futures):
                sub = futures[future]
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - a grader bug must not stop the class
                    errors.append(
                        f"{sub.student_id} {sub.chapter.key}: internal error, not "
                        f"graded:\n{traceback.format_exc()}"
                    )
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        self.write_summary()
        return errors
