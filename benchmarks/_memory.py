"""Resident-memory helpers shared by the benchmark scripts."""

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
