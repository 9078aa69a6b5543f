#!/usr/bin/env bash
# The README's test command: installs everything, then runs the linters and every test, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy"; mypy .
echo "== pytest"; exec pytest "$@"
