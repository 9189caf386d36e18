"""A class of honest, broken and hostile submissions graded together in one isolated run:
each gets exactly the score it deserves, and nothing of anyone else's is read or changed."""

from __future__ import annotations

import csv
import hashlib
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from autograder.cli import main
from autograder.core.sandbox import bwrap_works, landlock_works
from tests.hostile.corpus import ISOLATION_CASES, build

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")


class Listener(threading.Thread):
    """A TCP server on localhost that counts the connections it accepts."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port, self.accepted, self.stop = self.sock.getsockname()[1], 0, False

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                pass


def _results_json(out: Path, student: str) -> Path:
    """A student's results.json, wherever the output layout puts the student's folder."""
    found = [p for p in out.rglob("results.json") if p.parent.name == student]
    assert len(found) == 1, f"expected one results.json for {student}, found {found}"
    return found[0]


ISOLATIONS = ["bwrap"] + (["process"] if landlock_works() else [])


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_hostile_class_gets_deserved_scores_and_honest_work_is_untouched(
    tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    klass, out = tmp_path / "class", tmp_path / "grades"
    canary = f"canary-{isolation}-{tmp_path.name}"
    monkeypatch.setenv("LLM_COURSE_TEST_CANARY", canary)  # must never reach a student
    server = Listener()
    server.start()
    sleep_marker = "31337.5"
    context = {
        "solutions": str(ROOT / "solutions" / "attention.py"),
        "classmate": str(klass / "honest_full" / "01_attention.ipynb"),
        "targets": [str(out / "honest_full" / "results.json"), str(out / "grades.csv"),
                    str(out / "students" / "honest_full" / "results.json"),
                    str(klass / "honest_full" / "01_attention.ipynb")],
        "sleep": sleep_marker,
        "port": str(server.port),
    }  # fmt: skip
    only = None if isolation == "bwrap" else ISOLATION_CASES  # the rest does not depend on it
    cases = build(klass, ROOT / "course" / "01_attention.ipynb", context, only)
    honest_nb = klass / "honest_full" / "01_attention.ipynb"
    honest_hash = hashlib.sha256(honest_nb.read_bytes()).hexdigest()

    status = main(["grade", str(klass), "--out", str(out), "--jobs", "2", "--isolation",
                   isolation, "--exercise-timeout", "10", "--junit"])  # fmt: skip
    server.stop = True

    assert status == 0
    with open(out / "grades.csv", newline="") as f:
        given = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    table = [f"{s:22} given {given.get(s)!s:5} deserved {c.deserved}" for s, c in cases.items()]
    print("\n".join(table))
    assert given == {s: c.deserved for s, c in cases.items()}, "\n".join(table)
    assert server.accepted == 0, "a submission reached the network"
    assert hashlib.sha256(honest_nb.read_bytes()).hexdigest() == honest_hash
    assert '"score": 16' in _results_json(out, "honest_full").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert canary not in path.read_text(errors="replace"), f"{path} shows the environment"
    leftover = subprocess.run(["pgrep", "-f", f"sleep {sleep_marker}"], capture_output=True)
    assert leftover.returncode != 0, "a process spawned by a submission outlived its grading"
    assert (out / "junit.xml").read_text().count("<testsuite ") == len(cases)
