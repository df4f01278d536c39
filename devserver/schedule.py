"""EventBridge schedules, locally: a thread that invokes a scheduled function every few seconds with its sample
event (``events/<job>.json``), one invocation at a time, as a deployment's schedule does every minute.

``make run`` runs the webhook sender this way, so a webhook registered locally arrives within a second or two.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import TracebackType

from devserver import handlers

EVENTS = Path(__file__).resolve().parents[1] / "events"

logger = logging.getLogger("devserver.schedule")


class LocalSchedule:
    """``with LocalSchedule("webhook_delivery", every_seconds=1):`` … invokes it until the block ends."""

    def __init__(self, job: str, *, every_seconds: float) -> None:
        self._job = job
        self._every = every_seconds
        self._event = json.loads((EVENTS / f"{job}.json").read_text(encoding="utf-8"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{job}", daemon=True)

    def __enter__(self) -> LocalSchedule:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                handlers.invoke(self._job, self._event)
            except Exception as error:  # a failed run is logged and the next one tries again, as in Lambda
                logger.warning("%s failed: %s", self._job, type(error).__name__)
