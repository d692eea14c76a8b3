#!/bin/sh
# Sets up a fresh Debian machine, builds kvmesh in build/, and runs the main
# program on 4 local ranks: kvmesh-demo serving a seeded stream of requests
# with a small tensor- and sequence-parallel transformer (prefill on ranks
# 0-1 tp=2, decode on ranks 0-3 tp=2,sp=2), checked against a one-process
# reference.  Extra arguments go to kvmesh-demo (--help lists them).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/build.sh"
cd "$top/build"
# Open MPI refuses root and more ranks than cores unless told; this is the
# launcher's business, not the library's.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpiexec -n 4 apps/kvmesh-demo --check "$@" < /dev/null
