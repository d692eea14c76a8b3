#!/bin/sh
# Sets up a fresh Debian machine (missing packages only), builds kvmesh out
# of tree in build/, and runs the whole test suite: the CUnit unit tests and
# the multi-rank tests at 1-4 ranks.  Prints every runner's closing summary.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/setup.sh"
cd "$top"
[ -x configure ] || ./autogen.sh
mkdir -p build
cd build
[ -f Makefile ] || ../configure --quiet
make -j"$(nproc)" --no-print-directory
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
exit $status
