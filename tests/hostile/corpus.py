"""A class of chapter 01 submissions: honest ones, broken ones, and hostile ones.

Each case builds ``STUDENT_ID/01_attention.ipynb`` from the reference's own
source (so the honest parts are right) plus its twist, and states the score it
deserves out of 16. ``tests/test_hostile_corpus.py`` grades them all in one
run, side by side, and checks every score and that nothing leaked or was
damaged.

Points: scaled_dot_product_attention 3, causal_mask 1, MultiHeadAttention 3,
sinusoidal_positional_encoding 1, apply_rope 2, layer_norm 1, rms_norm 1,
gelu 1, FeedForward 1 (calls gelu), TransformerBlock 2 (calls
MultiHeadAttention, FeedForward, causal_mask). An exercise that fails only because a
function it calls fails is graded again with the reference standing in for that
function, and earns its points: one mistake costs one exercise.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import solutions.attention as ref

IMPORTS = "import math\n\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F"
NAMES = [
    "scaled_dot_product_attention", "causal_mask", "MultiHeadAttention",
    "sinusoidal_positional_encoding", "apply_rope", "layer_norm", "rms_norm", "gelu",
    "FeedForward", "TransformerBlock",
]  # fmt: skip


def reference_cells(drop: tuple[str, ...] = (), replace: dict[str, str] | None = None) -> list[str]:
    """The imports and one cell per exercise from the reference, minus or with changes."""
    replace = replace or {}
    cells = [IMPORTS]
    for name in NAMES:
        if name not in drop:
            cells.append(replace.get(name, inspect.getsource(getattr(ref, name))))
    return cells


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": c}
            for c in cells
        ],
        "metadata": {"llm_course": {"chapter": "01"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def _wrap(name: str, prologue: str) -> str:
    """The reference ``name`` under a new body: ``prologue`` first, then the right answer."""
    src = inspect.getsource(getattr(ref, name)).replace(f"def {name}(", "def _right_answer(", 1)
    sig = inspect.signature(getattr(ref, name))
    bare = sig.replace(
        parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
        return_annotation=sig.empty,
    )
    call = ", ".join(sig.parameters)
    body = "\n".join("    " + line for line in prologue.strip().splitlines())
    return f"{src}\n\ndef {name}{bare}:\n{body}\n    return _right_answer({call})\n"


def stub_cells() -> list[str]:
    """The imports and every exercise as a stub that raises NotImplementedError."""
    cells = [IMPORTS]
    for name in NAMES:
        obj = getattr(ref, name)
        if inspect.isclass(obj):
            cells.append(
                f"class {name}(nn.Module):\n    def __init__(self, *args, **kwargs):\n"
                "        raise NotImplementedError\n"
            )
        else:
            sig = inspect.signature(obj)
            bare = sig.replace(
                parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                return_annotation=sig.empty,
            )
            cells.append(f"def {name}{bare}:\n    raise NotImplementedError\n")
    return cells


# Run in a class body while the submission loads: frames forged on every descriptor the
# child might report through (a statement "key" that is a path to the reference, a
# length of 2 GB, a result for job 0), symlinks where files used to be read, then death.
FORGE = """import os, struct

class Forge:
    target = {solutions!r}
    for name in ("loading", "started", "result_0.pt", "/out/loading"):
        try:
            os.symlink(target, name)
        except OSError:
            pass
    def frame(kind, payload):
        return b"LLMc" + kind + struct.pack(">I", len(payload)) + payload
    forged = [
        frame(b"L", target.encode()),
        b"LLMc" + b"R" + struct.pack(">I", 2**31 - 1),
        frame(b"S", struct.pack(">I", 0)),
    ]
    for fd in range(3, 40):
        for data in forged:
            try:
                os.write(fd, data)
            except OSError:
                pass
    os._exit(0)
"""


@dataclass
class Case:
    student: str
    what: str
    deserved: int
    cells: Callable[[dict[str, str]], list[str] | str]  # context -> cells, or raw file text
    context_keys: tuple[str, ...] = field(default=())


CASES: list[Case] = [
    Case("honest_full", "the reference, honestly", 16, lambda c: reference_cells()),
    Case(
        "honest_partial",
        "layer_norm with the unbiased variance, rms_norm eps outside",
        14,
        lambda c: reference_cells(
            replace={
                "layer_norm": "def layer_norm(x, weight, bias, eps=1e-5):\n"
                "    mean = x.mean(-1, keepdim=True)\n"
                "    var = x.var(-1, keepdim=True, unbiased=True)\n"
                "    return (x - mean) / torch.sqrt(var + eps) * weight + bias\n",
                "rms_norm": "def rms_norm(x, weight, eps=1e-6):\n"
                "    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight\n",
            }
        ),
    ),
    Case("stub_only", "the notebook as shipped", 0, lambda c: "SHIPPED"),
    Case("not_json", "a file that is not JSON", 0, lambda c: '{"cells": [ truncated'),
    Case(
        "syntax_error",
        "a syntax error in the rms_norm cell",
        15,
        lambda c: reference_cells(
            replace={"rms_norm": "def rms_norm(x, weight, eps=1e-6):\n    return x / (\n"}
        ),
    ),
    Case(
        "missing_function",
        "sinusoidal_positional_encoding deleted",
        15,
        lambda c: reference_cells(drop=("sinusoidal_positional_encoding",)),
    ),
    Case(
        "wrong_return_type",
        "layer_norm returns a Python list",
        15,
        lambda c: reference_cells(
            replace={
                "layer_norm": "def layer_norm(x, weight, bias, eps=1e-5):\n"
                "    return F.layer_norm(x, x.shape[-1:], weight, bias, eps).tolist()\n"
            }
        ),
    ),
    Case(
        "infinite_loop",
        "apply_rope never returns",
        14,
        lambda c: reference_cells(
            replace={"apply_rope": _wrap("apply_rope", "while True:\n    pass")}
        ),
    ),
    Case(
        "memory_bomb",
        "rms_norm allocates until memory runs out",
        15,
        lambda c: reference_cells(
            replace={
                "rms_norm": _wrap(
                    "rms_norm", "hog = []\nwhile True:\n    hog.append(bytearray(1 << 28))"
                )
            }
        ),
    ),
    Case(
        "sys_exit_at_import",
        "sys.exit() in a class body (runs when loaded)",
        16,
        lambda c: [*reference_cells(), "import sys\n\nclass Quit:\n    sys.exit(3)"],
    ),
    Case(
        "os_exit_at_import",
        "os._exit() in a class body kills the loading process",
        16,
        lambda c: [*reference_cells(), "import os\n\nclass Die:\n    os._exit(0)"],
    ),
    Case(
        "print_flood",
        "gelu prints 100 MB, then answers right",
        16,
        lambda c: reference_cells(
            replace={
                "gelu": _wrap(
                    "gelu",
                    "import sys\nsys.stdout.write('x' * 50_000_000)\n"
                    "sys.stderr.write('y' * 50_000_000)",
                )
            }
        ),
    ),
    Case(
        "monkeypatch_torch",
        "patches torch's comparisons at import; layer_norm is wrong",
        15,
        lambda c: [
            *reference_cells(
                replace={
                    "layer_norm": "def layer_norm(x, weight, bias, eps=1e-5):\n    return x * 0\n"
                }
            ),
            "import torch\n\nclass Patch:\n"
            "    torch.allclose = lambda *a, **k: True\n"
            "    torch.equal = lambda *a, **k: True\n"
            "    torch.testing.assert_close = lambda *a, **k: None\n"
            "    yes = lambda a, *_, **k: torch.ones_like(a, dtype=torch.bool)\n"
            "    torch.Tensor.__eq__ = yes\n"
            "    torch.Tensor.__ne__ = lambda a, b: ~yes(a)\n"
            "    torch.isclose = yes\n",
        ],
    ),
    Case(
        "reads_solutions",
        "layer_norm copies the reference if it can reach it",
        15,
        lambda c: reference_cells(
            replace={
                "layer_norm": (
                    "def layer_norm(x, weight, bias, eps=1e-5):\n"
                    "    try:\n"
                    "        import solutions.attention as s\n"
                    "        return s.layer_norm(x, weight, bias, eps)\n"
                    "    except ImportError:\n"
                    "        pass\n"
                    "    for path in (" + repr(c["solutions"]) + ", 'solutions/attention.py'):\n"
                    "        try:\n"
                    "            ns = {}\n"
                    "            exec(open(path).read(), ns)\n"
                    "            return ns['layer_norm'](x, weight, bias, eps)\n"
                    "        except OSError:\n"
                    "            pass\n"
                    "    return x * 0\n"
                )
            }
        ),
        ("solutions",),
    ),
    Case(
        "writes_output",
        "rms_norm tries to overwrite grades and another student's files",
        16,
        lambda c: reference_cells(
            replace={
                "rms_norm": _wrap(
                    "rms_norm",
                    (
                        "for target in " + repr(c["targets"]) + ":\n"
                        "    try:\n"
                        "        with open(target, 'w') as f:\n"
                        "            f.write('{\"score\": 999}')\n"
                        "    except OSError:\n"
                        "        pass"
                    ),
                )
            }
        ),
        ("targets",),
    ),
    Case(
        "spawns_processes",
        "gelu starts a long-lived process and forks",
        16,
        lambda c: reference_cells(
            replace={
                "gelu": _wrap(
                    "gelu",
                    (
                        "import os, subprocess\n"
                        "try:\n"
                        "    subprocess.Popen(['sleep', '"
                        + c["sleep"]
                        + "'], start_new_session=True)\n"
                        "except OSError:\n"
                        "    pass\n"
                        "if os.fork() == 0:\n"
                        "    os.execvp('sleep', ['sleep', '" + c["sleep"] + "'])"
                    ),
                )
            }
        ),
        ("sleep",),
    ),
    Case(
        "opens_network",
        "gelu answers wrong if it can reach a server on localhost",
        16,
        lambda c: reference_cells(
            replace={
                "gelu": (
                    "def gelu(x):\n"
                    "    import socket\n"
                    "    try:\n"
                    "        socket.create_connection(('127.0.0.1', "
                    + c["port"]
                    + "), timeout=2).close()\n"
                    "        return x * 0\n"
                    "    except OSError:\n"
                    "        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi)"
                    " * (x + 0.044715 * x ** 3)))\n"
                )
            }
        ),
        ("port",),
    ),
    Case(
        "segfault",
        "causal_mask crashes the interpreter (TransformerBlock, which calls it, is graded "
        "again with the reference standing in)",
        15,
        lambda c: reference_cells(
            replace={"causal_mask": _wrap("causal_mask", "import ctypes\nctypes.string_at(0)")}
        ),
    ),
    Case(
        "os_exit_in_exercise",
        "gelu calls os._exit (FeedForward and the block, which call it, pass with the "
        "reference standing in)",
        15,
        lambda c: reference_cells(replace={"gelu": _wrap("gelu", "import os\nos._exit(0)")}),
    ),
    Case(
        "forged_frames_stub",
        "no implementation; forges the child's messages to make the parent read the reference",
        0,
        lambda c: [*stub_cells(), FORGE.format(solutions=c["solutions"])],
        ("solutions",),
    ),
    Case(
        "forged_frames_honest",
        "the reference, plus the same forgery while loading",
        16,
        lambda c: [*reference_cells(), FORGE.format(solutions=c["solutions"])],
        ("solutions",),
    ),
    Case(
        "garbage_on_descriptors",
        "gelu writes garbage to every descriptor, then answers right (its callers pass with "
        "the reference standing in)",
        15,
        lambda c: reference_cells(
            replace={
                "gelu": _wrap(
                    "gelu",
                    "import os\nfor fd in range(3, 40):\n    try:\n"
                    "        os.write(fd, b'not a frame' * 100)\n    except OSError:\n"
                    "        pass",
                )
            }
        ),
    ),
    Case(
        "reads_classmate",
        "layer_norm copies a classmate's if it can find it (mountinfo, cmdline, known path)",
        15,
        lambda c: reference_cells(
            replace={
                "layer_norm": (
                    "def layer_norm(x, weight, bias, eps=1e-5):\n"
                    "    import glob, os, re\n"
                    "    paths = [" + repr(c["classmate"]) + "]\n"
                    "    for src in ('/proc/self/mountinfo', '/proc/1/cmdline'):\n"
                    "        try:\n"
                    "            text = open(src, 'rb').read().decode(errors='replace')\n"
                    "        except OSError:\n"
                    "            continue\n"
                    "        for found in re.findall(r'/[^\\s\\x00]+', text):\n"
                    "            d = os.path.dirname(os.path.dirname(found))\n"
                    "            paths += glob.glob(d + '/*/01_attention.ipynb')\n"
                    "    for path in paths:\n"
                    "        try:\n"
                    "            text = open(path).read()\n"
                    "        except OSError:\n"
                    "            continue\n"
                    "        if 'def layer_norm' in text and 'honest' in path:\n"
                    "            return F.layer_norm(x, x.shape[-1:], weight, bias, eps)\n"
                    "    return x * 0\n"
                )
            }
        ),
        ("classmate",),
    ),
    Case(
        "environment_leak",
        "layer_norm answers wrong, naming what it found, if it sees the grader's environment",
        16,
        lambda c: reference_cells(
            replace={
                "layer_norm": _wrap(
                    "layer_norm",
                    "import glob, os\n"
                    "seen = [v for v in os.environ.values() if 'canary' in v]\n"
                    "for src in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
                    "    try:\n"
                    "        data = open(src, 'rb').read().decode(errors='replace')\n"
                    "    except OSError:\n"
                    "        continue\n"
                    "    seen += [p for p in data.split('\\x00') if 'canary' in p]\n"
                    "if seen:\n"
                    "    raise ValueError('found ' + ' '.join(seen)[:3000])",
                )
            }
        ),
    ),
    Case(
        "fork_bomb",
        "rms_norm forks 1000 sleeping processes, then answers right",
        15,
        lambda c: reference_cells(
            replace={
                "rms_norm": _wrap(
                    "rms_norm",
                    "import os\n"
                    "for _ in range(1000):\n"
                    "    if os.fork() == 0:\n"
                    "        try:\n"
                    "            os.execvp('sleep', ['sleep', '" + c["sleep"] + "'])\n"
                    "        finally:\n"
                    "            os._exit(0)",
                )
            }
        ),
        ("sleep",),
    ),
    Case(
        "forked_memory",
        "rms_norm forks three children of 1.4 GiB each (4.2 GiB together), then answers right",
        15,
        lambda c: reference_cells(
            replace={
                "rms_norm": _wrap(
                    "rms_norm",
                    "import os, time\n"
                    "for _ in range(3):\n"
                    "    if os.fork() == 0:\n"
                    "        try:\n"
                    "            hog = b'\\x01' * (1400 << 20)\n"
                    "            time.sleep(60)\n"
                    "        finally:\n"
                    "            os._exit(0)\n"
                    "time.sleep(8)",
                )
            }
        ),
    ),
    Case(
        "fills_tmp",
        "rms_norm writes 4.4 GiB to /tmp, $TMPDIR and /dev/shm, then answers right",
        15,
        lambda c: reference_cells(
            replace={
                "rms_norm": _wrap(
                    "rms_norm",
                    "import os, tempfile\n"
                    "chunk = b'\\x01' * (64 << 20)\n"
                    "n = 0\n"
                    "for folder in ('/dev/shm', tempfile.gettempdir(), '/tmp'):\n"
                    "    for i in range(24):\n"
                    "        with open(os.path.join(folder, f'fill{n}'), 'wb') as f:\n"
                    "            f.write(chunk)\n"
                    "        n += 1",
                )
            }
        ),
    ),
]


# The cases whose outcome depends on the isolation (files, network, environment, processes,
# memory, the child's channel): the ones graded again under each fallback.
ISOLATION_CASES = (
    "honest_full", "honest_partial", "reads_solutions", "writes_output", "spawns_processes",
    "opens_network", "forged_frames_stub", "forged_frames_honest", "garbage_on_descriptors",
    "reads_classmate", "environment_leak", "fork_bomb", "forked_memory", "fills_tmp",
)  # fmt: skip


def build(
    folder: Path, shipped: Path, context: dict[str, str], only: tuple[str, ...] | None = None
) -> dict[str, Case]:
    """Write the cases' notebooks under ``folder`` (all, or ``only`` those); return them by id."""
    cases = [c for c in CASES if only is None or c.student in only]
    for case in cases:
        path = folder / case.student / "01_attention.ipynb"
        made = case.cells(context)
        if made == "SHIPPED":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(shipped.read_bytes())
        elif isinstance(made, str):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(made, encoding="utf-8")
        else:
            write_notebook(path, made)
    return {c.student: c for c in cases}
