#!/usr/bin/env python3
"""Search at archive scale: footage cut into time shards, one Ray task per shard running
`earlyexit-search extract`, then `earlyexit-search fit` over the shard folder.

    python3 scale/earlyexit_scale.py MANIFEST --shards DIR --out BUNDLE [options] [-- FIT FLAGS]

MANIFEST (YAML) names the backbone, the flags every extract takes, and the footage:

    backbone: models/efficientnet_lite0_imagenet.onnx
    extract: [--mean, "127", --std, "128", --color, rgb, --layout, nchw]
    footage:
      - path: recordings/cam1-2026-11-01.mkv
      - path: recordings/cam1-2026-11-02.mkv
        ground_truth: recordings/cam1-2026-11-02.labels.csv   # optional
        role: holdout                                          # optional: train (default) or holdout
        start: 0                                               # optional, seconds
        end: 3600                                              # optional, seconds
        id: cam1-11-02                                         # optional: the file name
        extract: [--share, "0.1"]                              # optional: more flags for this one

Relative paths are taken from the manifest's folder. DIR must be a folder every Ray node sees
(NFS, a shared volume); each shard is written there under a temporary name and renamed when
complete, so a shard that is there is whole, and a rerun keeps it (after `extract` checks that it
holds the same frames). Ray retries a shard whose worker, or its extract, dies. The flags after `--` go to `fit` (the target, --seed, --labels, ...).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

import yaml


@dataclass
class Shard:
    """One `extract` run: a footage's frames from `start` to `end` seconds."""

    name: str
    footage: str
    args: List[str]
    path: str


def find_binary(given: Optional[str]) -> str:
    """The `earlyexit-search` binary: as given, on PATH, or built in this repository."""
    if given:
        return given
    on_path = shutil.which("earlyexit-search")
    if on_path:
        return on_path
    built = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "earlyexit-search")
    if os.path.exists(built):
        return os.path.abspath(built)
    sys.exit("error: earlyexit-search is not on PATH; build it (cargo build --release) or pass --bin")


def probe(binary: str, footage: str) -> dict:
    """The footage's length (frames, seconds, fps) from `earlyexit-search probe`."""
    out = subprocess.run([binary, "probe", footage], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr.strip() or f"error: cannot probe {footage}")
    return json.loads(out.stdout.splitlines()[0])


def plan(manifest_path: str, binary: str, shards_dir: str, shard_seconds: float):
    """The backbone, the extract flags, and every shard of every footage in the manifest."""
    with open(manifest_path) as f:
        manifest = yaml.safe_load(f) or {}
    base = os.path.dirname(os.path.abspath(manifest_path))

    def here(p: str) -> str:
        return p if "://" in p or os.path.isabs(p) else os.path.join(base, p)

    for key in ("backbone", "footage"):
        if key not in manifest:
            sys.exit(f"error: {manifest_path}: no '{key}'")
    backbone = here(manifest["backbone"])
    flags = [str(x) for x in manifest.get("extract", [])]
    shards, ids = [], {}
    for i, item in enumerate(manifest["footage"]):
        if "path" not in item:
            sys.exit(f"error: {manifest_path}: footage {i + 1} has no 'path'")
        path = here(item["path"])
        name = str(item.get("id") or os.path.basename(path.rstrip("/")))
        if name in ids:
            sys.exit(f"error: {manifest_path}: footage {ids[name]} and {i + 1} have the same id '{name}'; "
                     "give one an 'id'")
        ids[name] = i + 1
        start = float(item.get("start", 0.0))
        end = item.get("end")
        if end is not None and float(end) <= start:
            sys.exit(f"error: {manifest_path}: footage {i + 1} ends ({end} s) before it starts ({start} s)")
        if end is None:
            end = probe(binary, path).get("seconds")
        common = ["--footage", path, "--id", name, "--role", item.get("role", "train")]
        # Flags for this footage alone, after the manifest's: a share for long training
        # footage, say, while held-out footage is read whole.
        common += [str(x) for x in item.get("extract", [])]
        if item.get("ground_truth"):
            common += ["--ground-truth", here(item["ground_truth"])]
        if end is None:
            # A length the container does not tell: one shard, read whole.
            cuts = [(None, None)]
        else:
            end = float(end)
            cuts = []
            t = start
            while t < end:
                cuts.append((t, min(t + shard_seconds, end)))
                t += shard_seconds
            # The last shard reads to the footage's end unless the manifest gives one, so that
            # a duration rounded down loses no frame.
            if "end" not in item and cuts:
                cuts[-1] = (cuts[-1][0], None)
        for s, e in cuts:
            label = "whole" if s is None else f"{s:.3f}-{'end' if e is None else f'{e:.3f}'}"
            file = os.path.join(shards_dir, f"{name.replace('/', '_')}.{label}.parquet")
            args = list(common)
            if s is not None and (s > 0 or len(cuts) > 1):
                args += ["--start", f"{s:.6f}"]
            if e is not None:
                args += ["--end", f"{e:.6f}"]
            shards.append(Shard(f"{name} {label}", path, args, file))
    return backbone, flags, shards


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s MANIFEST --shards DIR --out BUNDLE [options] [-- FIT FLAGS]")
    parser.add_argument("manifest", help="the footage manifest (YAML)")
    parser.add_argument("--shards", required=True, help="the shard folder, seen by every node")
    parser.add_argument("--out", required=True, help="where fit writes the bundle")
    parser.add_argument("--shard-seconds", type=float, default=300.0, help="footage per shard (default 300 s)")
    parser.add_argument("--address", help="a running Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--workers", type=int, help="with a local Ray: CPUs it may use (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="CPUs (and ONNX Runtime threads) per shard task")
    parser.add_argument("--retries", type=int, default=3, help="times a shard is retried when its worker dies")
    parser.add_argument("--bin", help="the earlyexit-search binary every node runs")
    parser.add_argument("--extract-only", action="store_true", help="stop after the shards")
    argv = sys.argv[1:]
    # The flags after `--` are fit's.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    fit_flags = argv[split + 1:]

    binary = find_binary(args.bin)
    os.makedirs(args.shards, exist_ok=True)
    backbone, flags, shards = plan(args.manifest, binary, args.shards, args.shard_seconds)
    # Every shard goes to a task, and `extract` keeps a complete shard of the same frames and
    # refuses anything else there, so a changed manifest never reuses a stale shard.
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        # A Ray of this machine alone: on loopback, not on the machine's network address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)

    class Killed(Exception):
        """The extract process died of a signal (the out-of-memory killer, say): worth a retry."""

    @ray.remote(num_cpus=args.threads, max_retries=args.retries, retry_exceptions=[Killed])
    def extract(command: List[str]):
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode < 0:
            raise Killed(f"{' '.join(command)} died of signal {-done.returncode}")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
        return time.time() - started, "is complete: nothing to extract" in done.stderr

    pending = {}
    for s in shards:
        command = [binary, "extract", "--backbone", backbone, *flags, *s.args,
                   "--threads", str(args.threads), "--out", s.path]
        pending[extract.remote(command)] = s
    print(f"{len(shards)} shards to extract or find complete", flush=True)
    started, finished, extracted = time.time(), 0, 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        s = pending.pop(ready[0])
        try:
            seconds, complete = ray.get(ready[0])
        except Exception as e:  # the task's own error, after Ray's retries
            print(f"error: shard {s.name}: {e}", file=sys.stderr)
            return 1
        finished += 1
        extracted += 0 if complete else 1
        left = (time.time() - started) / finished * len(pending)
        what = "complete already" if complete else f"extracted in {seconds:.1f} s"
        print(f"[{finished}/{len(shards)}] {s.name}: {what}; about {left:.0f} s left", flush=True)
    ray.shutdown()
    print(f"{len(shards)} shards: {len(shards) - extracted} complete already, {extracted} extracted", flush=True)

    if args.extract_only:
        return 0
    # The shards of this manifest, not whatever else the folder holds.
    listed = [a for s in shards for a in ("--shards", s.path)]
    command = [binary, "fit", "--backbone", backbone, *listed, *fit_flags, "--out", args.out]
    print(f"fit: {binary} fit --backbone {backbone} --shards ({len(shards)} shards) {' '.join(fit_flags)} --out {args.out}",
          flush=True)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
