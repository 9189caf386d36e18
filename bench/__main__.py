"""`make bench`: every benchmark, each writing a Markdown table to bench/results/."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import bench


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(Path(bench.__file__).parent)])
        if not m.name.startswith("_")
    )  # fmt: skip
    for name in names:
        print(f"## bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
