#!/usr/bin/env bash
# One idempotent entry point: installs the Debian packages pcache needs, configures and builds,
# then runs the requested job.
#
#   bash scripts/setup.sh demo    # build (release), run the built-in demo and a 10 s crash campaign
#   bash scripts/setup.sh test    # build (dev: debug, assertions, -Werror) and run every test
#   bash scripts/setup.sh build [preset]   # only install and build
#
# Environment: PCACHE_SKIP_APT=1 skips the package step (offline machines that already have them).
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-build}
packages=(cmake ninja-build pkg-config g++ clang-14 libclang-rt-14-dev libboost-dev
          libboost-program-options-dev libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
          libpmem2-dev liburing-dev libfuse3-dev nbdkit-plugin-dev zstd libzstd-dev
          fuse3 nbdkit libnbd-bin fio e2fsprogs python3 libblkid-dev help2man
          libnbd-dev librbd-dev ceph-mon ceph-osd ceph-mgr ceph-common)

install_packages() {
    [ "${PCACHE_SKIP_APT:-0}" = 1 ] && return 0
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {  # build PRESET [TARGET...]: everything, or only the targets named
    local preset=$1
    shift
    cmake --preset "$preset" >/dev/null
    if [ $# -gt 0 ]; then
        cmake --build --preset "$preset" --target "$@"
    else
        cmake --build --preset "$preset"
    fi
}

install_packages
case "$job" in
    demo)
        build release pcache_tool  # only what the demo runs: the pcache tool
        build/release/tools/pcache demo
        # then a short crash campaign on simulated pmem: power cut at every persistence point
        exec build/release/tools/pcache sim --seconds 10
        ;;
    test)
        build dev
        ctest --preset dev
        ;;
    build)
        build "${2:-dev}"
        ;;
    *)
        echo "usage: $0 demo|test|build [preset]" >&2
        exit 2
        ;;
esac
