#!/usr/bin/env bash
# scripts/test-deb.sh: installs the Debian package (scripts/build-deb.sh) in a clean Debian 12
# root, made with debootstrap from the Debian mirror, with apt resolving its dependencies; then,
# in that root, with no variable set but PATH: gst-inspect-1.0 earlyexit, a pipeline through
# all three elements, and earlyexit-search inspect. Needs root (chroot, mount). Fails on the
# first check that does not hold.
#   EARLYEXIT_DEB_ROOT_TAR  a tarball of a debootstrapped root to start from instead (made by
#                           this script at data/deb-root.tar.gz on its first run)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
say() { printf '==> test-deb: %s\n' "$*"; }
fail() { printf 'test-deb: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root, for chroot and mount"

deb=$(scripts/build-deb.sh | tail -1)
[ -f "$deb" ] || fail "build-deb.sh printed no package path (got '$deb')"
say "package: $deb ($(du -h "$deb" | cut -f1))"

# A pristine root, kept as a tarball: each run installs into a fresh copy of it.
tarball=${EARLYEXIT_DEB_ROOT_TAR:-$repo/data/deb-root.tar.gz}
fresh="" root=""
cleanup() {
  if [ -n "$root" ]; then
    # A busy /proc is detached lazily; rm stays on the root's own file system either way.
    umount "$root/proc" 2>/dev/null || umount -l "$root/proc" 2>/dev/null || true
    rm -rf --one-file-system "$root"
  fi
  [ -z "$fresh" ] || rm -rf --one-file-system "$fresh"
  rm -f "$tarball.tmp"
}
trap cleanup EXIT
if [ ! -f "$tarball" ]; then
  command -v debootstrap >/dev/null 2>&1 || apt-get install -y -q debootstrap
  fresh=$(mktemp -d)
  say "debootstrap --variant=minbase bookworm (once; kept as $tarball)"
  debootstrap --variant=minbase bookworm "$fresh" http://deb.debian.org/debian >/dev/null ||
    fail "debootstrap of Debian 12 from deb.debian.org"
  mkdir -p "$(dirname "$tarball")"
  tar -C "$fresh" -czf "$tarball.tmp" . || fail "packing the root into $tarball"
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$fresh"
  fresh=""
fi
root=$(mktemp -d /tmp/earlyexit-deb-root.XXXXXX)
tar -C "$root" -xzf "$tarball"
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/earlyexit.deb"

say "apt-get install ./earlyexit.deb gstreamer1.0-tools in the clean root"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
log="$root/tmp/apt.log"
in_root apt-get update -q >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update in the root"; }
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  /tmp/earlyexit.deb gstreamer1.0-tools >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get install"; }
status=$(in_root dpkg -s earlyexit) || fail "dpkg -s earlyexit: $status"
grep -q '^Status: install ok installed' <<<"$status" || fail "not installed: $status"

# A one-stage bundle of the shipped Fashion-MNIST model (bundle format: docs/bundle-format.md).
mkdir -p "$root/opt/bundle"
cp models/fmnist_resnet20w32.onnx "$root/opt/bundle/backbone.onnx"
cp models/fmnist_classes.txt "$root/opt/bundle/labels.txt"
cat > "$root/opt/bundle/exits.yaml" <<'YAML'
format: earlyexit/1
name: fmnist-one-stage
input: {layout: nchw, width: 28, height: 28, color: gray, mean: [0.0], std: [255.0]}
labels: labels.txt
stages:
  - segment: backbone.onnx
YAML

say "gst-inspect-1.0 earlyexit, earlyexitoverlay, earlyexitpublish"
for element in earlyexit earlyexitoverlay earlyexitpublish; do
  inspect=$(in_root gst-inspect-1.0 "$element" 2>&1) || fail "gst-inspect-1.0 $element: $inspect"
  # Debian 12 merges /lib into /usr/lib: GStreamer may name either.
  grep -Eq "Filename +(/usr)?/lib/x86_64-linux-gnu/gstreamer-1.0/libgstearlyexit.so" <<<"$inspect" ||
    fail "$element was not loaded from the system folder: $(grep Filename <<<"$inspect")"
done

say "a pipeline: videotestsrc ! earlyexit ! earlyexitoverlay ! earlyexitpublish ! fakesink"
records=$(in_root gst-launch-1.0 -q videotestsrc num-buffers=8 \
  ! video/x-raw,format=GRAY8,width=28,height=28 ! earlyexit model=/opt/bundle \
  ! videoconvert ! earlyexitoverlay ! earlyexitpublish location=- stream=deb ! fakesink) ||
  fail "the pipeline failed: $records"
lines=$(grep -c '"stream":"deb"' <<<"$records" || true)
[ "$lines" -eq 8 ] || fail "expected 8 records, got $lines: $records"
grep -q '"class-id":' <<<"$records" || fail "records without results: $records"

say "earlyexit-search inspect"
cuts=$(in_root earlyexit-search inspect --backbone /opt/bundle/backbone.onnx) ||
  fail "earlyexit-search inspect: $cuts"
[ -n "$cuts" ] || fail "earlyexit-search inspect printed nothing"
say "passed: installed in a clean root, found by GStreamer, ran with no variable set"
