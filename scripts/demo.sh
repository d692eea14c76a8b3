#!/bin/sh
# Sets up a fresh Debian machine, builds kvmesh in build/, and runs the main
# program on 4 local ranks.  Until the decode demo lands, the main program is
# the benchmark: one cache init and one decode step, each against its
# baseline, on the default shape (8 layers, batch 8, 4096 positions, 8 kv
# heads, head dim 128, bf16, mesh tp=2,sp=2).  Extra arguments go to
# kvmesh-bench.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/build.sh"
cd "$top/build"
# Open MPI refuses root and more ranks than cores unless told; this is the
# launcher's business, not the library's.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
for op in init concat-decode; do
    mpiexec -n 4 apps/kvmesh-bench --op "$op" "$@" < /dev/null
done
