"""Orbax checkpoints with verified manifests: a damaged checkpoint is set aside, never deleted.

Orbax writes a step into a temporary directory and renames it when complete, so a run
killed mid-save leaves no half-written step behind. Files can still be damaged later (a
full disk, a copy cut short), so after each save we write ``manifests/<step>.json`` with
the size and SHA-256 of every file of the step. :meth:`Checkpoints.restore` walks the
steps from the newest:

* manifest present and matching: restore it;
* no manifest (the process died between orbax's rename and the manifest write, or the
  manifests were lost): restore it anyway, since orbax only renames a finished step
  into place, and write its manifest now;
* manifest unreadable or not matching, or orbax fails to read the step: move the step
  (and its manifest) aside to ``checkpoints/quarantine/<step>`` with a warning, and try
  the next older one. Nothing is deleted on suspicion; a quarantined step can be
  inspected or moved back by hand.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil

import orbax.checkpoint as ocp

from jaxneg import rundir

log = logging.getLogger(__name__)

QUARANTINE = rundir.QUARANTINE


def _digest(root: str) -> dict:
    out = {}
    for base, _, files in os.walk(root):
        for f in sorted(files):
            path = os.path.join(base, f)
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[os.path.relpath(path, root)] = [os.path.getsize(path), h.hexdigest()]
    return out


class Checkpoints:
    """``save(step, state)`` keeps the newest ``keep``; ``restore(template)`` -> ``(step, state)`` or None.

    ``primary``: this process writes manifests and moves bad steps aside (process 0 of a
    multi-host run); the others only read. ``asynchronous``: :meth:`save` returns at once and
    one background thread writes the step and its manifest while training goes on (``state``
    must then be host arrays that nobody changes, e.g. a ``jax.device_get`` copy); the next
    save, :meth:`wait` and :meth:`close` wait for it, and re-raise its error. A process
    killed mid-write leaves no step behind (orbax renames a step into place when complete).
    """

    def __init__(self, directory: str, keep: int, primary: bool = True, asynchronous: bool = False):
        self.directory = os.path.abspath(directory)
        self.manifests = os.path.join(os.path.dirname(self.directory), rundir.MANIFESTS)
        self.primary = primary
        os.makedirs(self.manifests, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False))
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "checkpoints") if asynchronous else None
        self._pending = None

    def _manifest_path(self, step: int) -> str:
        return os.path.join(self.manifests, f"{step}.json")

    def _write_manifest(self, step: int) -> None:
        path = self._manifest_path(step)
        with open(path + ".tmp", "w") as f:
            json.dump(_digest(os.path.join(self.directory, str(step))), f)
        os.replace(path + ".tmp", path)

    def save(self, step: int, state) -> None:
        """Write ``state`` as step ``step`` (in the background if ``asynchronous``), then its manifest."""
        self.wait()  # one write at a time, in step order
        if self._writer is None:
            self._save(step, state)
        else:
            self._pending = self._writer.submit(self._save, step, state)

    def wait(self) -> None:
        """Return when the last :meth:`save` is on disk with its manifest (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()
        if self.primary:
            self._write_manifest(step)
            kept = {str(s) for s in self.manager.all_steps()}
            for name in os.listdir(self.manifests):
                if name.endswith(".json") and name[:-5] not in kept:
                    os.remove(os.path.join(self.manifests, name))

    def check(self, step: int) -> str:
        """``"verified"``, ``"unverified"`` (no manifest), ``"mismatch"`` or ``"bad_manifest"``."""
        path = self._manifest_path(step)
        if not os.path.exists(path):
            return "unverified"
        try:
            with open(path) as f:
                want = json.load(f)
            if not isinstance(want, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # truncated or garbled: the step cannot be verified
            log.warning("manifest of checkpoint %d is unreadable (%s)", step, e)
            return "bad_manifest"
        return "verified" if _digest(os.path.join(self.directory, str(step))) == want else "mismatch"

    def verified(self, step: int) -> bool:
        """The step's files match the manifest written when it was saved."""
        return self.check(step) == "verified"

    def restore(self, template, optional: tuple = ()):
        """Newest checkpoint that verifies (or has no manifest) and loads, as ``(step, state)``; None if none.

        ``optional``: top-level keys of ``template`` that a checkpoint may lack (written by an
        older version); such a step is restored without them rather than set aside. Steps found
        bad on the way are moved to ``checkpoints/quarantine/`` (see the module docstring), so
        the resumed run can save those step numbers again.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            status = self.check(step)
            if status in ("mismatch", "bad_manifest"):
                why = "does not match its manifest" if status == "mismatch" else "has an unreadable manifest"
                self.quarantine(step, why)
                continue
            attempts = [template]
            lacking = tuple(k for k in optional if k in template)
            if lacking:  # a step written before those keys existed
                attempts.append({k: v for k, v in template.items() if k not in lacking})
            state = error = None
            for i, t in enumerate(attempts):
                try:
                    state = self.manager.restore(step, args=ocp.args.StandardRestore(t))
                except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is set aside the same way
                    error = error or e
                    continue
                if i:
                    log.warning("checkpoint %d has no %s (an older format); restored without", step, list(lacking))
                break
            if state is None:
                self.quarantine(step, f"failed to load ({type(error).__name__}: {error})")
                continue
            if status == "unverified":
                log.warning("checkpoint %d has no manifest; it loaded (orbax renames only finished steps into "
                            "place), so it is used and its manifest written now", step)
                if self.primary:
                    self._write_manifest(step)
            return step, state
        return None

    def quarantine(self, step: int, why: str) -> str | None:
        """Move step ``step`` (and its manifest) to ``checkpoints/quarantine/<step>[.n]``; return the new path."""
        if not self.primary:
            log.warning("checkpoint %d %s; skipped", step, why)
            return None
        root = os.path.join(self.directory, QUARANTINE)
        os.makedirs(root, exist_ok=True)
        dest, n = os.path.join(root, str(step)), 0
        while os.path.exists(dest):
            n += 1
            dest = os.path.join(root, f"{step}.{n}")
        shutil.move(os.path.join(self.directory, str(step)), dest)
        manifest = self._manifest_path(step)
        if os.path.exists(manifest):
            shutil.move(manifest, os.path.join(dest, "manifest.json"))
        self.manager.reload()
        log.warning("checkpoint %d %s: moved aside to %s; trying an older one", step, why, dest)
        return dest

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def close(self) -> None:
        """Wait for a pending save, then release orbax's resources."""
        try:
            self.wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown()
            self.manager.close()
