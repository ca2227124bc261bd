#!/usr/bin/python3
"""Render an inspection-belt stream from Fashion-MNIST: a fixed camera over a belt where each
item stays for a while, then the next comes.

scripts/render-belt.py IMAGES.gz LABELS.gz FIRST COUNT SEED OUT_STEM
  -> OUT_STEM.mkv (28x28 GRAY8, FFV1 in Matroska, 25 fps) and OUT_STEM.labels.csv (frame,label)

The recipe:
- items FIRST .. FIRST+COUNT-1 of the IDX files, in order;
- each item stays for a dwell drawn uniformly from 4..40 frames (numpy's default_rng(SEED));
- every frame is the item shifted by an offset in {-1, 0, 1} x {-1, 0, 1} (camera shake, zero
  fill), times a gain of 1 + 0.08 sin(2 pi t / 250) (light drift, t the frame number), plus
  Gaussian sensor noise of sigma 4 grey levels, rounded and clipped to 0..255.
Draws come in that order: the dwell, then per frame the offset (rows, columns) and the noise.
Pixels are computed in float64, as numpy 2 does for a float64 gain, so numpy 1 and 2 give the
same frames.
"""
import gzip
import struct
import subprocess
import sys
import tempfile

import numpy as np

SIDE = 28


def idx(path):
    """The array in an IDX file (gzipped or not)."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    (magic,) = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def shifted(image, dy, dx):
    """`image` moved by (dy, dx) pixels, with zeros where nothing moved in."""
    out = np.zeros((SIDE, SIDE), np.float64)
    src = image.astype(np.float64)
    ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
    xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
    out[yd, xd] = src[ys, xs]
    return out


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    images, labels, first, count, seed, stem = sys.argv[1:7]
    first, count, seed = int(first), int(count), int(seed)
    items = idx(images)[first : first + count]
    truth_of_item = idx(labels)[first : first + count]
    if len(items) != count:
        sys.exit(f"{images}: fewer than {first + count} images")
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for image, label in zip(items, truth_of_item):
        for _ in range(int(rng.integers(4, 41))):
            dy, dx = rng.integers(-1, 2, size=2)
            t = len(frames)
            gain = 1 + 0.08 * np.sin(2 * np.pi * t / 250)
            frame = shifted(image, dy, dx) * gain + rng.normal(0, 4, (SIDE, SIDE))
            frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
            truth.append(int(label))
    with tempfile.TemporaryDirectory() as tmp:
        raw = f"{tmp}/frames.raw"
        np.stack(frames).tofile(raw)
        subprocess.run(
            ["gst-launch-1.0", "-q", "filesrc", f"location={raw}", f"blocksize={SIDE * SIDE}", "!",
             "rawvideoparse", "format=gray8", f"width={SIDE}", f"height={SIDE}", "framerate=25/1", "!",
             "avenc_ffv1", "!", "matroskamux", "!", "filesink", f"location={stem}.mkv"],
            check=True,
        )
    with open(f"{stem}.labels.csv", "w") as f:
        f.write("frame,label\n")
        f.writelines(f"{i},{label}\n" for i, label in enumerate(truth))
    print(f"{stem}.mkv: {len(truth)} frames, {count} items")


if __name__ == "__main__":
    main()
