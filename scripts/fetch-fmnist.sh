#!/usr/bin/env bash
# scripts/fetch-fmnist.sh DEST: render the labeled Fashion-MNIST streams into DEST.
#
# The images come from Debian's dataset-fashion-mnist package (IDX files, gzipped, under
# /usr/share/datasets/fashion-mnist; scripts/setup.sh installs it; FMNIST_IDX_DIR overrides the
# folder). Each stream is a run of 28x28 gray images in file order, one image per frame, 30 fps,
# losslessly encoded (FFV1 in Matroska), so decoding gives back the original bytes exactly:
#
#   fmnist-train-10k.mkv   training images 0-9,999
#   fmnist-test-a-5k.mkv   test images 0-4,999
#   fmnist-test-b-5k.mkv   test images 5,000-9,999
#
# Next to each, NAME.labels.csv holds the ground truth: header "frame,label", then one row per
# frame (frame counts from 0, label is the class index). Files already in DEST are kept.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
# DEST is taken relative to the caller's directory; make it absolute before anything else.
mkdir -p "$1"
dest=$(cd "$1" && pwd)
cd "$repo"

say() { printf '==> fetch-fmnist: %s\n' "$*"; }
die() { printf 'fetch-fmnist: error: %s\n' "$*" >&2; exit 1; }

idx_dir=${FMNIST_IDX_DIR:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
  t10k-labels-idx1-ubyte.gz; do
  [ -f "$idx_dir/$f" ] || die "$idx_dir/$f is missing: run scripts/setup.sh, or apt-get install dataset-fashion-mnist"
done
command -v gst-launch-1.0 >/dev/null 2>&1 || die "gst-launch-1.0 not found: run scripts/setup.sh"

side=28                # image width and height
frame=$((side * side)) # bytes per image

work=$(mktemp -d "$dest/.fetch-fmnist.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The big-endian 32-bit number at byte OFFSET of FILE.
be32() { od -An -tu1 -j "$2" -N 4 "$1" | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }'; }

# Decompress an IDX file once into the work folder and check its header. IDX: 2 zero bytes, a
# type byte (8 = unsigned byte), the number of dimensions, then each dimension as a big-endian
# 32-bit number, then the data. Prints the path of the decompressed file.
unpack() { # NAME DIMS
  local name=$1 dims=$2 out="$work/${1%.gz}"
  if [ ! -f "$out" ]; then
    gzip -dc "$idx_dir/$name" >"$out"
    [ "$(be32 "$out" 0)" -eq $((0x800 + dims)) ] || die "$idx_dir/$name: not an IDX file of $dims dimension(s) of bytes"
    if [ "$dims" -eq 3 ]; then
      if [ "$(be32 "$out" 8)" -ne "$side" ] || [ "$(be32 "$out" 12)" -ne "$side" ]; then
        die "$idx_dir/$name: images are not ${side}x${side}"
      fi
    fi
  fi
  echo "$out"
}

# Bytes [SKIP, SKIP+COUNT) of FILE on stdout.
slice() { dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=1M status=none; }

render() { # STREAM IMAGES.gz LABELS.gz START COUNT
  local stream=$1 start=$4 count=$5
  local mkv="$dest/$stream.mkv" csv="$dest/$stream.labels.csv"
  if [ -s "$mkv" ] && [ -s "$csv" ]; then
    say "$stream: present in $dest, kept"
    return
  fi
  local images labels
  images=$(unpack "$2" 3)
  labels=$(unpack "$3" 1)
  local n
  n=$(be32 "$images" 4)
  [ "$(be32 "$labels" 4)" -eq "$n" ] || die "$2 and $3 hold different numbers of items"
  [ $((start + count)) -le "$n" ] || die "$2 holds $n images, fewer than $((start + count))"

  say "$stream: images $start-$((start + count - 1)) of $2 -> $mkv"
  # Labels: one byte per item after an 8-byte header.
  {
    echo "frame,label"
    slice "$labels" $((8 + start)) "$count" | od -An -v -tu1 -w1 | awk '{ print NR - 1 "," $1 }'
  } >"$work/$stream.labels.csv"
  [ "$(wc -l <"$work/$stream.labels.csv")" -eq $((count + 1)) ] || die "$stream: wrong number of labels"

  # Images: 28x28 bytes each after a 16-byte header, encoded losslessly.
  slice "$images" $((16 + start * frame)) $((count * frame)) >"$work/$stream.gray8"
  gst-launch-1.0 -q filesrc location="$work/$stream.gray8" \
    ! rawvideoparse width=$side height=$side format=gray8 framerate=30/1 \
    ! avenc_ffv1 ! matroskamux ! filesink location="$work/$stream.mkv" ||
    die "$stream: gst-launch-1.0 failed to encode (is gstreamer1.0-libav installed? run scripts/setup.sh)"
  rm -f "$work/$stream.gray8"

  # Move into place only when both are complete, so an interrupted run leaves nothing half-made.
  mv -f "$work/$stream.mkv" "$mkv"
  mv -f "$work/$stream.labels.csv" "$csv"
}

render fmnist-train-10k train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz 0 10000
render fmnist-test-a-5k t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz 0 5000
render fmnist-test-b-5k t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz 5000 5000
say "done: $dest"
