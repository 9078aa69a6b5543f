#!/usr/bin/env bash
# Is the suite stable? Clones a branch (default main) of this repository into a fresh temporary directory, as CI
# does, and runs the README's test command (scripts/test.sh) there N times in a row, stopping at the first
# failure. Prints the time and pytest's summary of each run; on a failure, where its log is kept.
#   scripts/repeat-suite.sh [N (default 10)] [BRANCH (default main)]
# The clone, its .venv and every run's TMPDIR stay inside the temporary directory, which is removed when all
# runs pass (its path is printed either way). Run it as root, like scripts/test.sh.
set -euo pipefail
runs=${1:-10}
branch=${2:-main}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ironlb-repeat-XXXXXX")
echo "repeat-suite: $runs runs of scripts/test.sh on a clone of $branch in $work"
git clone --quiet --no-local "$repo" "$work/ironlb"
git -C "$work/ironlb" checkout --quiet --detach "origin/$branch" 2>/dev/null \
    || git -C "$work/ironlb" checkout --quiet --detach "$branch"
echo "repeat-suite: commit $(git -C "$work/ironlb" log -1 --format='%h %s' | cut -c1-100)"

for run in $(seq 1 "$runs"); do
    log="$work/run-$run.log"
    mkdir -p "$work/tmp-$run"
    began=$(date +%s)
    if (cd "$work/ironlb" && TMPDIR="$work/tmp-$run" scripts/test.sh) >"$log" 2>&1; then
        status=passed
    else
        status=FAILED
    fi
    took=$(($(date +%s) - began))
    summary=$(grep -E '^=+ .*(passed|failed|error).* in ' "$log" | tail -1 | tr -d '=' | xargs || true)
    printf 'run %d/%d: %s in %dm%02ds (%s)\n' "$run" "$runs" "$status" $((took / 60)) $((took % 60)) "$summary"
    if [ "$status" = FAILED ]; then
        grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' || tail -20 "$log" | sed 's/^/    /'
        echo "repeat-suite: stopped at run $run; its log: $log (the clone stays in $work)"
        exit 1
    fi
    rm -rf "$work/tmp-$run"
done
rm -rf "$work"
echo "repeat-suite: all $runs runs passed"
