#!/usr/bin/env bash
# The mutation score of the pure cores (docs/testing.md): a benchmark run by hand, not part of scripts/test.sh.
# Installs mutmut (the `mutation` extra) into .venv, then runs bench/mutation.py with these arguments:
#   scripts/mutation.sh [PACKAGE ...] [--max-children N] [--workdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
if ! .venv/bin/pip show -q mutmut >/dev/null 2>&1; then
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[mutation]'
fi
exec .venv/bin/python -m bench.mutation "$@"
