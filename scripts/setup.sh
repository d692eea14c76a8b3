#!/bin/sh
# Installs the Debian packages kvmesh needs to build and test, only those missing.
# Does nothing (and needs no network) when everything is present.
set -eu

pkgs="openmpi-bin libopenmpi-dev libscalapack-openmpi-dev libcunit1-dev
autoconf automake libtool pkg-config make gcc gnuplot-nox"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi
