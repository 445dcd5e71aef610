"""One process per run folder: an advisory lock held while a run trains in it.

``--overwrite`` while another process trains in the folder would leave ``config.yaml`` and ``last.pt`` from
different runs, and two ``--resume`` at once would train on the same checkpoints. The lock is ``fcntl.flock`` on
``RUN_DIR/.lock`` (the kernel drops it when the holder exits, even on a crash or kill -9, so there is nothing stale
to clean up); the file records the holder's host and PID for the refusal message.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from disdepth.runs import Run


class RunFolderBusy(FileExistsError):
    """Another process is training in this run folder."""


class RunLock:
    """``with RunLock(run_dir):`` hold the run folder's lock or raise :class:`RunFolderBusy` naming the holder.

    Where ``fcntl`` does not exist (Windows) or the filesystem refuses locks, the run goes on unlocked.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Run(Path(run_dir)).lock_path
        self._file = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderBusy(
                f"{self.path.parent}: a run is already training here ({holder}); wait for it to finish, stop it, or "
                "use another --run-dir"
            ) from None
        except OSError:  # e.g. a network filesystem without flock: go on unlocked rather than refuse to train
            handle.close()
            return self
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
