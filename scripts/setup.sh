#!/usr/bin/env bash
# Everything a fresh machine needs: Debian packages, a project venv, PyTorch's CPU
# wheel and the project itself. Safe to run again: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages: bubblewrap isolates student code when grading; chromium runs the
# website's browser test (tests/test_website.py).
debs=""
command -v bwrap >/dev/null 2>&1 || debs="bubblewrap"
[ -x /usr/bin/chromium ] || debs="$debs chromium"
if [ -n "$debs" ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages ($debs)"
    # shellcheck disable=SC2086 # $debs is a list of package names
    if ! ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq $debs >/dev/null); then
        for deb in $debs; do  # one by one: a distribution may lack one of them
            $SUDO apt-get install -y -qq "$deb" >/dev/null 2>&1 \
                || echo "setup: warning: could not install $deb (without bubblewrap grading" \
                    "falls back to plain subprocesses; without chromium the website test is skipped)"
        done
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.llm-course-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing torch==2.13.0 (CPU) and the project into .venv"
    .venv/bin/pip install -q --upgrade pip
    # A torch already in .venv (a CUDA build on a GPU machine) is kept.
    .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==2.13.0"
    .venv/bin/pip install -q -e ".[dev]"
    touch "$stamp"
fi
# MathJax for the website, installed from the npm registry (not kept in the repository) and
# served by the site itself, so equations render without the internet.
mj=.venv/site-static/mathjax
if [ ! -f "$mj/tex-mml-chtml.js" ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "setup: installing MathJax 3.2.2 from npm"
        npm install --silent --no-audit --no-fund --prefix .venv/npm mathjax@3.2.2 >/dev/null
        mkdir -p "$mj/output/chtml/fonts"
        cp .venv/npm/node_modules/mathjax/es5/tex-mml-chtml.js "$mj/"
        cp -r .venv/npm/node_modules/mathjax/es5/output/chtml/fonts/woff-v2 "$mj/output/chtml/fonts/"
    else
        echo "setup: warning: npm not found; the website's equations need MathJax in $mj"
        mkdir -p "$mj"
    fi
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
