#!/bin/sh
# Sets up a fresh Debian machine (missing packages only), builds kvmesh out
# of tree in build/, and runs the whole test suite: the CUnit unit tests and
# the multi-rank tests at 1-4 ranks.  Prints every runner's closing summary.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/build.sh"
cd "$top/build"
status=0
make -j1 --no-print-directory check || status=$?
for log in tests/unit.log mpi-tests/runtests.log; do
    [ -f "$log" ] || continue
    echo "==== $log"
    if [ "$log" = tests/unit.log ]; then
        sed -n '/Run Summary/,/Elapsed/p' "$log"
        grep -E '^\s+[0-9]+\. ' "$log" || true
    else
        grep -v '^PASS mpi-tests/runtests\|^FAIL mpi-tests/runtests' "$log"
    fi
done
# one closing line for the whole suite: CUnit tests plus multi-rank runs
unit=$(awk '$1 == "tests" { print $4, $5 }' tests/unit.log 2>/dev/null || true)
mpi=$(sed -n 's/^mpi-tests: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' \
      mpi-tests/runtests.log 2>/dev/null || true)
set -- ${unit:-0 1} ${mpi:-0 1}
echo "total: $(($1 + $3)) passed, $(($2 + $4)) failed"
exit $status
