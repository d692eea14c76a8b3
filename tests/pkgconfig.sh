#!/bin/sh
# Installs kvmesh into a scratch DESTDIR and builds the embedding example
# with a plain C compiler and nothing but `pkg-config --cflags --libs
# kvmesh`, then runs it on 2 ranks: the installed header, library and
# kvmesh.pc are enough to build an MPI program that uses kvmesh.
set -eu
top=${KVMESH_BUILDDIR:?}
src=${KVMESH_SRCDIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -C "$top" --no-print-directory install DESTDIR="$tmp" > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; exit 1; }
prefix=$(sed -n 's/^prefix=//p' "$top/kvmesh.pc")
libdir=$(PKG_CONFIG_PATH="$top" pkg-config --variable=libdir kvmesh)
# the installed kvmesh.pc, moved to where DESTDIR put it (the MPI it
# requires stays where it is)
mkdir "$tmp/pc"
sed "s|^prefix=.*|prefix=$tmp$prefix|" "$tmp$libdir/pkgconfig/kvmesh.pc" > "$tmp/pc/kvmesh.pc"
export PKG_CONFIG_PATH="$tmp/pc"
flags=$(pkg-config --cflags --libs kvmesh)
cc=$(command -v cc || command -v gcc)
echo "$cc decode_step.c $flags -lm"
"$cc" -std=c11 ${KVMESH_TEST_CFLAGS:-} -o "$tmp/decode_step" "$src/examples/decode_step.c" $flags -lm
LD_LIBRARY_PATH="$tmp$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    ${MPIEXEC:-mpiexec} ${MPIEXEC_FLAGS:-} -n 2 "$tmp/decode_step" < /dev/null
