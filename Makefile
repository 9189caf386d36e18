# The course's commands. `make book` builds the website, `make test` runs every test;
# both set up .venv first (scripts/setup.sh) on a fresh machine.
PY := .venv/bin/python
SETUP_STAMP := .venv/.llm-course-installed

.PHONY: setup book test lint format fixtures stubs bench clean model gpu-check

# The course models, the pages that state their numbers and the tests that check them run
# on PyTorch's and MKL's AVX2 kernels on every x86-64 CPU, so that every machine trains the
# same models (solutions/course_model.py, PINNED_KERNELS, says why). The benches do not.
model book test: export ATEN_CPU_CAPABILITY := avx2
model book test: export MKL_CBWR := AVX2

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

# From chapter 07 on, the theory pages run the course model: `model` trains it once (cached).
# The page "For students" offers the student bundle (`llm-course release`) as a zip,
# built first into _build/student/ by scripts/student_bundle.py.
book: setup model
	@start=$$(date +%s); \
	$(PY) scripts/student_bundle.py || exit 1; \
	env -u MPLBACKEND .venv/bin/jupyter-book build . -W -n --keep-going || exit 1; \
	echo "book: built in $$(( $$(date +%s) - start )) s: _build/html/index.html"

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Two workers on pytest-xdist (tests/conftest.py's scheduler says how tests are grouped
# and ordered: a file's tests stay together when it has a module fixture, slow ones first).
# Each worker computes on cores / workers threads (tests/conftest.py). A third worker on
# two cores measured slower on a fresh clone (pytest 983 s against 746 s, fde3032): the
# suite is CPU-bound, and the book build's unit gets a third of the machine.
TEST_WORKERS ?= 2
test: setup lint model
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

# Regenerate the self-check fixtures and the notebook stubs from solutions/.
fixtures: setup
	$(PY) -m autograder.core.fixtures

stubs: setup
	$(PY) -m autograder.core.stubs sync course/*.ipynb

clean:
	rm -rf _build .pytest_cache .ruff_cache

bench: setup
	$(PY) -m bench

# The course's own small language models, trained once and cached in .cache/: chapter 04's
# main and draft models, one after the other, and beside them chapter 10's tasks model (one
# thread; its log is printed at the end). OMP_WAIT_POLICY=PASSIVE keeps the three threads
# on two cores from spinning; the weights are bit for bit those of a sequential run.
# Measured from an empty cache: 251 s side by side against about 375 s one after another.
model: setup
	@log=$$(mktemp); status=0; \
	OMP_WAIT_POLICY=PASSIVE $(PY) -m solutions.course_model --size tasks >$$log 2>&1 & tasks=$$!; \
	for size in main draft; do \
		OMP_WAIT_POLICY=PASSIVE $(PY) -m solutions.course_model --size $$size || status=1; \
	done; \
	wait $$tasks || status=1; \
	grep -v "training (fast path)" $$log; rm -f $$log; exit $$status

# Every reference (each grading case, float32 and bfloat16) and every notebook on a CUDA
# GPU, compared with the CPU; prints a table (also _build/gpu_check.md). On a machine
# without a GPU it says so; `.venv/bin/python scripts/gpu_check.py --device cpu` tries it.
gpu-check: setup model
	$(PY) scripts/gpu_check.py
