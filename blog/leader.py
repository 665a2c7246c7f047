"""One process at a time: a file lock elects which process runs a background job.

Every gunicorn worker builds the same app; without an election each would relay the same outbox
(every event published once per worker) or pull the same event feed (every event handled once
per worker — a second email really sent). The lock is the operating system's: released even when
its holder is SIGKILLed, so a standby takes over within ``retry_seconds``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


class Leader:
    def __init__(
        self,
        key: str,
        start: Callable[[], None],
        stop: Callable[[], None],
        retry_seconds: float = 1.0,
    ) -> None:
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.key = key
        self.lock_path = Path(tempfile.gettempdir()) / f"strangler-blog-{digest}.lock"
        self._start = start
        self._stop = stop
        self._retry = retry_seconds
        self._stopping = threading.Event()
        self._lock_file: IO[str] | None = None
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self._lock_file is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            handle = self.lock_path.open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                self._stopping.wait(self._retry)
                continue
            if self._stopping.is_set():  # stop() came while we waited for the lock
                handle.close()
                return
            self._lock_file = handle
            log.info("%s: this process runs it", self.key)
            try:
                self._start()
            except BaseException:
                self._lock_file = None
                handle.close()  # a standby may try
                raise
            return

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self._retry + 1)
        if self._lock_file is not None:
            self._stop()
            self._lock_file.close()  # releases the lock
            self._lock_file = None
