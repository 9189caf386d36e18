"""The student notebooks: stubs equal the reference's signatures and docstrings, saved
without outputs, and they run top to bottom both as shipped and with the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import solutions.alignment
import solutions.architectures
import solutions.attention
import solutions.evaluation
import solutions.inference
import solutions.moe
import solutions.peft
import solutions.prompting
import solutions.sampling
import solutions.training
from autograder.core.stubs import drifted, exercise_cells
from tests.notebook_tools import count_images, execute, outputs_text, with_reference

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {  # module, exercises, figures
    "01_attention": (solutions.attention, 10, 5),
    "02_architectures": (solutions.architectures, 11, 6),
    "03_moe": (solutions.moe, 4, 2),
    "04_training": (solutions.training, 12, 3),
    "05_peft": (solutions.peft, 8, 3),
    "06_alignment": (solutions.alignment, 8, 4),
    "07_sampling": (solutions.sampling, 8, 3),
    "08_evaluation": (solutions.evaluation, 9, 5),
    "09_inference": (solutions.inference, 13, 4),
    "10_prompting": (solutions.prompting, 9, 6),
}


@pytest.mark.parametrize("key", NOTEBOOKS)
def test_stub_cells_are_derived_from_the_reference(key: str) -> None:
    path = ROOT / "course" / f"{key}.ipynb"
    assert drifted(path) == [], "run `make stubs` to rewrite the stub cells"
    names = [name for _, name in exercise_cells(json.loads(path.read_text()))]
    assert len(names) == len(set(names)) == NOTEBOOKS[key][1]


@pytest.mark.parametrize("key", NOTEBOOKS)
def test_notebook_is_saved_without_outputs(key: str) -> None:
    nb = json.loads((ROOT / "course" / f"{key}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
@pytest.mark.parametrize("key", NOTEBOOKS)
def test_notebook_runs_as_shipped_and_says_not_implemented(key: str) -> None:
    path = ROOT / "course" / f"{key}.ipynb"
    nb = execute(json.loads(path.read_text()), path.parent, strict=False)
    text = outputs_text(nb)
    assert text.count("not implemented yet") == NOTEBOOKS[key][1]
    assert "PASS" not in text and "FAIL" not in text
    assert count_images(nb) == 0


@pytest.mark.slow
@pytest.mark.parametrize("key", NOTEBOOKS)
def test_notebook_with_the_reference_passes_every_check_and_draws_its_figures(key: str) -> None:
    module, exercises, figures = NOTEBOOKS[key]
    path = ROOT / "course" / f"{key}.ipynb"
    nb = execute(with_reference(path, module), path.parent, strict=True)
    text = outputs_text(nb)
    assert text.count("PASS") == exercises and "not implemented" not in text
    assert count_images(nb) == figures
