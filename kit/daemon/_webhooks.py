"""Webhook delivery of fired alerts: a worker apart from the engine and the writer.

The database is the queue: a fired alert is committed ``pending`` (:mod:`kit.daemon._alerts`),
and this worker takes the due ones in bounded batches (``batch``, oldest first), POSTs each as
JSON to its owner's URL, and commits the outcome (delivered, or the next attempt's time). A
failed attempt (no answer in ``timeout``, a refused connection, a non-2xx status, a redirect) is
retried after ``base * 2**(attempts-1)`` seconds, capped at ``cap``; after ``max_attempts`` it is
``failed``. A restart resumes whatever is still pending. POSTs run on the worker's own small
thread pool, so a slow receiver never holds the threads the database calls use, and never the
engine's loop.

Delivery is at least once: a crash between a receiver's 2xx and its commit resends it. Each
payload carries ``fire`` (the fire's id) for the receiver to drop a repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kit.daemon._writer import RunDb
from kit.store import Store, alerts
from kit.store.models import utcnow

log = logging.getLogger("kit.daemon")


@dataclass(frozen=True)
class Backoff:
    """When to retry: after attempt ``n`` (1-based) wait ``base * 2**(n-1)`` s, at most ``cap``;
    ``None`` after ``max_attempts``: give up."""

    base: float = 1.0
    cap: float = 300.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base and self.max_attempts >= 1):
            raise ValueError(f"bad backoff {self!r}")

    def after(self, attempts: int) -> float | None:
        if attempts >= self.max_attempts:
            return None
        return min(self.cap, self.base * 2.0 ** (attempts - 1))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is a failed delivery: never re-POST (or GET) somewhere else


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, payload: dict[str, object], timeout: float) -> str | None:
    """POST ``payload`` as JSON; None on a 2xx, else why not (one line, never the URL)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "kit-alerts/1"}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            r.read(65536)
            return None if 200 <= r.status < 300 else f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"[:200]


class Webhooks:
    """The delivery worker: ``await run()``; :meth:`wake` after new fires are committed."""

    def __init__(
        self,
        store: Store,
        run_db: RunDb,
        counts: Counter[str],
        *,
        backoff: Backoff | None = None,
        timeout: float = 10.0,
        poll: float = 1.0,
        batch: int = 64,
        senders: int = 4,
        send: Callable[[str, dict[str, object], float], str | None] = post,
    ) -> None:
        self.store = store
        self._run_db = run_db
        self._counts = counts
        self.backoff = backoff or Backoff()
        self._timeout = timeout
        self._poll = poll
        self._batch = batch
        self._send = send
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="kit-webhook")
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New fires are committed: look now rather than at the next poll (event loop thread)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                due = await self._run_db(alerts.due_for_daemon, self.store, utcnow(), self._batch)
                if due:
                    await asyncio.gather(*(self._deliver(d) for d in due))
                if len(due) < self._batch:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._poll)
                    except TimeoutError:
                        pass
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _deliver(self, d: alerts.Due) -> None:
        loop = asyncio.get_running_loop()
        if d.url is None:  # does not decrypt: retried, so a fixed KIT_SECRETS_KEY and a restart deliver it
            error = d.error or "no URL"
        else:
            error = await loop.run_in_executor(self._pool, self._send, d.url, d.payload, self._timeout)
        if error is None:
            await self._run_db(alerts.delivered_for_daemon, self.store, d.fire_id)
            self._counts["webhooks_delivered"] += 1
            return
        attempts = d.attempts + 1
        retry = self.backoff.after(attempts)
        self._counts["webhook_failures"] += 1
        log.warning("webhook delivery failed" + ("" if retry is not None else "; giving up"),
                    extra={"fire": d.fire_id, "attempts": attempts, "error": error, "retry_in": retry})  # fmt: skip
        await self._run_db(alerts.failed_for_daemon, self.store, d.fire_id, error, retry)
