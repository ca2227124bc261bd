#!/usr/bin/env python3
"""The Ray driver against a real local Ray cluster on 127.0.0.1, started and stopped here:
a run over 9 shards with 2 workers writes the bundle `search` writes, byte for byte, while a
worker is killed in the middle of a shard; a rerun extracts nothing.

    python3 scale/test_scale.py            (needs `ray` and a release build)

Models and footage come from EARLYEXIT_ASSETS, else ../shared/assets, as the Rust tests'.
"""

import filecmp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Ray binds its own machine's address even when asked for 127.0.0.1, unless this is off; the
# test's traffic stays on loopback. Every process the test starts inherits it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Ray turns token authentication on when ~/.ray/auth_token exists (a local `ray.init()` writes
# it), and then the test's processes disagree; on loopback alone, it is off for all of them.
os.environ["RAY_AUTH_MODE"] = "disabled"

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.join(REPO, "target", "release", "earlyexit-search")
ASSETS = os.environ.get("EARLYEXIT_ASSETS") or os.path.join(REPO, "..", "shared", "assets")
MODEL = os.path.join(ASSETS, "models", "fmnist_resnet20w32.onnx")
CLIP = os.path.join(ASSETS, "footage", "fmnist-test-a-5k.mkv")
TRUTH = os.path.join(ASSETS, "footage", "fmnist-test-a-5k.labels.csv")
# A short exit search, certified on the footage's last fifth: the flags search and fit share.
FIT = ["--max-accuracy-loss", "0.01", "--seed", "3", "--budget", "300", "--candidates", "4",
       "--cost", "macs", "--format", "3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """`ray start --head` on 127.0.0.1 with 2 CPUs, in a process group of its own."""

    def __init__(self):
        self.port = free_port()
        # Unix socket paths must stay short: a folder right under /tmp.
        self.temp = tempfile.mkdtemp(prefix="eeray-", dir="/tmp")
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        self.log = os.path.join(self.temp, "ray-start.log")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                 "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
                 "--object-store-memory=100000000", f"--temp-dir={self.temp}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            probe = subprocess.run(
                [sys.executable, "-c", f"import ray; ray.init(address='{self.address}'); ray.shutdown()"],
                capture_output=True)
            if probe.returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(1)
        with open(self.log) as log:
            started = log.read()[-3000:]
        self.stop()
        raise RuntimeError(f"the Ray cluster did not come up in 90 s; ray start said:\n{started}\n"
                           f"and a client said:\n{probe.stderr[-2000:]}")

    def stop(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers Ray started in sessions of their own.
        subprocess.run(["pkill", "-KILL", "-f", self.temp], capture_output=True)
        shutil.rmtree(self.temp, ignore_errors=True)


def extract_processes(shards: str):
    """(pid, parent pid) of every `earlyexit-search extract` writing into `shards`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"extract" in argv and any(a.startswith(shards.encode()) for a in argv):
            found.append((int(pid), parent))
    return found


class Killer(threading.Thread):
    """Kills one Ray worker (and the extract it runs) once its shard is half written."""

    def __init__(self, shards: str):
        super().__init__(daemon=True)
        self.shards = shards
        self.killed = None
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            partial = [f for f in os.listdir(self.shards) if f.startswith(".earlyexit-shard-")]
            running = extract_processes(self.shards)
            # A shard being written: its temporary file has rows in it.
            if running and any(os.path.getsize(os.path.join(self.shards, f)) > 0 for f in partial
                               if os.path.exists(os.path.join(self.shards, f))):
                pid, worker = running[0]
                for victim in (worker, pid):
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.killed = (worker, pid)
                return
            time.sleep(0.05)


class RayDriver(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BIN):
            raise unittest.SkipTest(f"{BIN} is missing: cargo build --release")
        cls.dir = tempfile.mkdtemp(prefix="eescale-")
        cls.cluster = RayCluster()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def driver(self, manifest: str, shards: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, os.path.join(HERE, "earlyexit_scale.py"), manifest, "--shards", shards,
             "--out", out, "--shard-seconds", "20", "--address", self.cluster.address, "--bin", BIN,
             "--", *FIT],
            capture_output=True, text=True, env=dict(os.environ, EARLYEXIT_CACHE=os.path.join(self.dir, "cache")))

    def test_a_ray_run_writes_the_search_bundle_through_a_killed_worker(self):
        searched = os.path.join(self.dir, "searched")
        subprocess.run([BIN, "search", "--backbone", MODEL, "--footage", CLIP, "--ground-truth", TRUTH, *FIT,
                        "--out", searched], check=True, capture_output=True,
                       env=dict(os.environ, EARLYEXIT_CACHE=os.path.join(self.dir, "cache")))
        manifest = os.path.join(self.dir, "manifest.yaml")
        with open(manifest, "w") as f:
            f.write(f"backbone: {MODEL}\nfootage:\n  - path: {CLIP}\n    ground_truth: {TRUTH}\n")
        shards, out = os.path.join(self.dir, "shards"), os.path.join(self.dir, "ray")
        os.makedirs(shards)
        killer = Killer(shards)
        killer.start()
        run = self.driver(manifest, shards, out)
        killer.done.set()
        print(run.stdout, file=sys.stderr)
        self.assertEqual(run.returncode, 0, run.stderr[-4000:])
        self.assertIsNotNone(killer.killed, "no worker was caught in the middle of a shard")
        print(f"killed Ray worker {killer.killed[0]} and its extract {killer.killed[1]} mid-shard",
              file=sys.stderr)
        self.assertIn("9 shards: 0 complete already, 9 extracted", run.stdout)
        written = sorted(f for f in os.listdir(shards) if f.endswith(".parquet"))
        self.assertEqual(len(written), 9, written)
        self.assert_same_bundle(searched, out)

        again = self.driver(manifest, shards, os.path.join(self.dir, "again"))
        self.assertEqual(again.returncode, 0, again.stderr[-4000:])
        self.assertIn("9 shards: 9 complete already, 0 extracted", again.stdout)
        self.assert_same_bundle(searched, os.path.join(self.dir, "again"))

    def assert_same_bundle(self, a: str, b: str):
        files = lambda d: sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
        self.assertEqual(files(a), files(b))
        self.assertIn("exits.yaml", files(a))
        _, mismatch, errors = filecmp.cmpfiles(a, b, files(a), shallow=False)
        self.assertEqual((mismatch, errors), ([], []))


if __name__ == "__main__":
    unittest.main(verbosity=2)
