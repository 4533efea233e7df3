"""Orbax checkpoints with verified manifests: a torn or corrupt latest checkpoint is skipped.

Orbax writes a step into a temporary directory and renames it when complete, so a run
killed mid-save leaves no half-written step behind. Files can still be damaged later (a
full disk, a copy cut short), so after each save we write ``manifests/<step>.json`` with
the size and SHA-256 of every file of the step, and :meth:`Checkpoints.restore` walks the
steps from the newest, skipping any whose files do not match their manifest (or that
orbax fails to read), and restores the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


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
    """``save(step, state)`` keeps the newest ``keep``; ``restore(template)`` -> ``(step, state)`` or None."""

    def __init__(self, directory: str, keep: int, primary: bool = True):
        self.directory = os.path.abspath(directory)
        self.manifests = os.path.join(os.path.dirname(self.directory), "manifests")
        self.primary = primary
        os.makedirs(self.manifests, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False))

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()
        if self.primary:
            manifest = os.path.join(self.manifests, f"{step}.json")
            with open(manifest + ".tmp", "w") as f:
                json.dump(_digest(os.path.join(self.directory, str(step))), f)
            os.replace(manifest + ".tmp", manifest)
            kept = {str(s) for s in self.manager.all_steps()}
            for name in os.listdir(self.manifests):
                if name.endswith(".json") and name[:-5] not in kept:
                    os.remove(os.path.join(self.manifests, name))

    def verified(self, step: int) -> bool:
        """The step's files match the manifest written when it was saved."""
        path = os.path.join(self.manifests, f"{step}.json")
        if not os.path.exists(path):
            return False
        with open(path) as f:
            want = json.load(f)
        return _digest(os.path.join(self.directory, str(step))) == want

    def restore(self, template):
        """Newest checkpoint that verifies and loads, as ``(step, state)``; None if there is none.

        Bad steps newer than the one restored are deleted, so the run can save them again.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            if self.verified(step):
                try:
                    return step, self.manager.restore(step, args=ocp.args.StandardRestore(template))
                except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped the same way
                    log.warning("checkpoint %d failed to load (%s); trying an older one", step, e)
            else:
                log.warning("checkpoint %d does not match its manifest (torn or corrupt); trying an older one", step)
            self.manager.delete(step)
        return None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def close(self) -> None:
        self.manager.close()
