"""Build the student bundle as a zip for the website: ``llm-course release``, then zip.

    .venv/bin/python scripts/student_bundle.py [--out _build/student]

writes OUT/llm-course-student.zip, whose one top folder ``llm-course-student/`` is the
bundle that ``llm-course release`` writes into ``release/student/`` (notebooks, helpers,
self-check and fixtures, the trained course model; no solutions, no grading specs).
`make book` runs it before building the site, whose page "For students" offers the zip.

The zip is reproducible: its entries are sorted and dated 1980-01-01, so the same bundle
gives the same bytes (and the site's download does not change when nothing else did).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "llm-course-student"
ZIP_NAME = f"{NAME}.zip"
DEFAULT_OUT = ROOT / "_build" / "student"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def zip_folder(folder: Path, dest: Path, top: str = NAME) -> Path:
    """Zip ``folder`` into ``dest`` under the single top folder ``top``, reproducibly."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            entry = zipfile.ZipInfo(f"{top}/{path.relative_to(folder).as_posix()}", EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    partial.replace(dest)
    return dest


def build(out: Path = DEFAULT_OUT) -> Path:
    """Run ``llm-course release`` into a scratch folder and zip its student bundle."""
    with tempfile.TemporaryDirectory(prefix="llm-course-release-") as tmp:
        cmd = [sys.executable, "-m", "autograder", "release", "--out", tmp]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        return zip_folder(Path(tmp) / "student", out / ZIP_NAME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the zip")
    dest = build(parser.parse_args().out)
    print(f"student bundle: {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
