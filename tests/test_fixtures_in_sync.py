"""The committed self-check fixtures equal what solutions/ and the specs produce now."""

from __future__ import annotations

import pytest
import torch

from autograder.core.chapters import CHAPTERS, load_spec
from autograder.core.compare import compare
from autograder.core.fixtures import load_fixture
from autograder.core.materialize import SELFCHECK_SEED, materialize
from autograder.core.spec import Tolerance

PRESENT = [c for c in CHAPTERS if c.fixture.exists()]


def test_chapter_01_has_a_fixture() -> None:
    assert any(c.key == "01_attention" for c in PRESENT)


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_fixture_matches_a_fresh_materialisation(info) -> None:
    stored = load_fixture(info)  # weights_only: a fixture cannot run code when loaded
    fresh = materialize(load_spec(info), SELFCHECK_SEED)
    # float32 matrix products round differently on different CPUs (AVX2 or AVX512 kernels):
    # 1.2e-6 on 0.034 and 2.8e-5 on 8.15 seen between two machines; an edit of a reference
    # moves its answers far more than 1e-5
    problem = compare(fresh, stored, Tolerance(atol=1e-5, rtol=1e-5), name="fixture")
    assert problem is None, f"{problem}: run `make fixtures` and commit the result"


@pytest.mark.parametrize("info", PRESENT, ids=[c.key for c in PRESENT])
def test_fixture_loads_with_weights_only(info) -> None:
    data = torch.load(info.fixture, weights_only=True)
    assert {e["name"] for e in data["exercises"]} == {e.name for e in load_spec(info).exercises}
