#!/bin/sh
# Installs what is missing (scripts/setup.sh), then configures and builds
# kvmesh out of tree in build/.  Used by demo.sh and test.sh.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/scripts/setup.sh"
cd "$top"
[ -x configure ] || ./autogen.sh
mkdir -p build
cd build
[ -f Makefile ] || ../configure --quiet
make -j"$(nproc)" --no-print-directory
