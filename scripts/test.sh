#!/bin/sh
# Sets up a fresh Debian machine (missing packages only), builds kvmesh out
# of tree in build/, and runs the whole test suite with `make check`: the
# CUnit unit tests and one run per line of mpi-tests/testlist, then all of
# it again under AddressSanitizer + UBSan (build/sanitize/).  Prints every
# run's summary and one closing line for the whole suite.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/build.sh"
cd "$top/build"
status=0
make -j1 --no-print-directory check || status=$?
passed=0
failed=0
for tree in . sanitize; do
    [ -d "$tree/mpi-tests" ] || continue
    label=$([ "$tree" = . ] && echo "plain" || echo "ASan + UBSan")
    echo "==== $label build: tests/unit"
    if [ -f "$tree/tests/unit.log" ]; then
        sed -n 's/^ *\(kernel path of this machine: [a-z0-9]*\).*/\1/p' "$tree/tests/unit.log"
        sed -n '/Run Summary/,/Elapsed/p' "$tree/tests/unit.log"
        grep -E '^\s+[0-9]+\. ' "$tree/tests/unit.log" || true
        # CUnit's "tests" row: Total Ran Passed Failed
        set -- $(awk '$1 == "tests" { print $4, $5 }' "$tree/tests/unit.log") 0 1
        passed=$((passed + $1)) failed=$((failed + $2))
    else
        failed=$((failed + 1))
    fi
    echo "==== $label build: multi-rank runs and the installed-package build"
    for run in "$tree"/mpi-tests/*.mpi "$tree"/tests/pkgconfig.sh; do
        case $run in *.mpi) base=${run%.mpi} ;; *) base=$run ;; esac
        [ -f "$run" ] || [ -f "$base.trs" ] || continue
        log=$base.log
        result=$(sed -n 's/^:test-result: //p' "$base.trs" 2>/dev/null)
        result=${result:-"NOT RUN"}
        if [ "$result" = PASS ]; then
            passed=$((passed + 1))
            echo "PASS $(grep 'ranks=' "$log" | grep -v '^run-one' | tail -n 1)"
        else
            failed=$((failed + 1))
            echo "$result $(basename "$log" .log); its output:"
            sed 's/^/    /' "$log" | tail -n 40
        fi
    done
done
# a run that left no result (make stopped before it) is a failure too
[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1
echo "total: $passed passed, $failed failed"
exit $status
