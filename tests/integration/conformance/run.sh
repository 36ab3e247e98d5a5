#!/usr/bin/env bash
# Builds (once) and runs containerd's snapshotter conformance suite against `strata serve`.
#
#   run.sh BUILD_DIR STRATA_BIN [extra test binary flags, e.g. -test.run 'TestConformance/Basic$']
#
# Exit 77 (ctest SKIP_RETURN_CODE) when not root or when go or containerd's Go sources
# (Debian: golang-go golang-github-containerd-containerd-dev) are missing.
# The Go build is offline (GO111MODULE=off, GOPATH=<build>/...:/usr/share/gocode) and uses a
# Go build cache under the build dir; the test binary is rebuilt only when this directory's
# Go source is newer than it.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR STRATA_BIN [test flags...]" >&2
  exit 2
fi
build_dir=$(realpath "$1")
strata_bin=$(realpath "$2")
shift 2
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gocode=/usr/share/gocode
containerd_src=$gocode/src/github.com/containerd/containerd

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "the conformance suite mounts overlays and must run as root"
go=$(command -v go || true)
[[ -n $go ]] || skip "go not found (Debian package golang-go)"
[[ -f $containerd_src/snapshots/testsuite/testsuite.go ]] \
  || skip "containerd Go sources not found under $containerd_src (golang-github-containerd-containerd-dev)"
[[ -x $strata_bin ]] || { echo "strata binary not found: $strata_bin" >&2; exit 1; }

out_dir=$build_dir/tests/conformance
test_bin=$out_dir/conformance.test
mkdir -p "$out_dir/gopath" "$out_dir/gocache"

export GO111MODULE=off
export GOPATH=$out_dir/gopath:$gocode
export GOCACHE=$out_dir/gocache
export GOFLAGS=
export GOPROXY=off

# ctest runs the overlay and fsfilter variants in parallel: one builds, the other waits on
# the lock and then finds the binary fresh.
newest_src=$(ls -t "$src_dir"/*.go | head -n1)
exec {build_lock}>"$out_dir/build.lock"
flock "$build_lock"
if [[ ! -x $test_bin || $newest_src -nt $test_bin ]]; then
  echo "building $test_bin ($("$go" version))"
  start=$(date +%s%N)
  (cd "$src_dir" && "$go" test -c -o "$test_bin.tmp.$$" .)
  mv -f "$test_bin.tmp.$$" "$test_bin"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'go test -c took %d.%03d s\n' $((ms / 1000)) $((ms % 1000))
fi
flock -u "$build_lock"
exec {build_lock}>&-

# The suite makes one temp dir per case under TMPDIR and mounts inside it; keep them all in
# one private dir so anything left behind (a crashed run) is found and unmounted here.
tmp=$(mktemp -d /tmp/strata-conformance.XXXXXX)
sweep() {
  local mp left=0
  # Deepest first; mountinfo escapes spaces etc. as octal, which printf %b undoes.
  while read -r mp; do
    mp=$(printf '%b' "$mp")
    echo "run.sh: unmounting leftover mount $mp" >&2
    umount "$mp" 2>/dev/null || umount -l "$mp" || left=1
  done < <(awk -v p="$tmp" '$5 == p || index($5, p "/") == 1 { print length($5) "\t" $5 }' \
             /proc/self/mountinfo | sort -rn | cut -f2-)
  if [[ $left -eq 0 ]]; then
    rm -rf "$tmp"
  else
    echo "run.sh: could not unmount everything under $tmp; left in place" >&2
  fi
}
trap sweep EXIT

# A FUSE personality (STRATA_SNAPSHOTTER=NAME=fsfilter) hands out fuse3.strata-fsfilter
# mounts, which the suite mounts through mount.fuse3: it finds the program in PATH.
bin_dir=$(dirname "$strata_bin")
if [[ ${STRATA_SNAPSHOTTER:-} == *=fsfilter && ! -x $bin_dir/strata-fsfilter ]]; then
  echo "STRATA_SNAPSHOTTER=$STRATA_SNAPSHOTTER needs $bin_dir/strata-fsfilter (not built?)" >&2
  exit 1
fi

status=0
(cd "$out_dir" && TMPDIR=$tmp STRATA_BIN=$strata_bin PATH="$bin_dir:$PATH" \
  "$test_bin" -test.v -test.timeout 25m "$@") || status=$?
exit $status
