"""Shared by the benchmark scripts: resident-memory probes and one fresh process per measurement."""

import os
import threading


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class PeakRSS:
    """Highest resident set size seen while the ``with`` block runs (polled every 2 ms)."""

    def __enter__(self):
        self.peak, self._stop = rss_gb(), threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_gb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_gb())


def run_one(script: str, args, timeout: int) -> dict:
    """Run ``script --worker *args`` in a fresh process; its last stdout line is a JSON result."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, os.path.abspath(script), "--worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
