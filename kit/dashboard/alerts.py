"""A read-only view of the logged-in user's alerts and the alerts that fired (not wired into a page yet).

Every query goes through :mod:`kit.store.alerts` with the session's user name (taken on the
server from the login cookie, never from the browser), so another user's alerts never leave the
server; the webhook shows masked (scheme and host) as every listing does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import panel as pn

from kit.store import alerts

ALERT_COLUMNS = ["id", "stream", "condition", "when", "on"]
FIRED_COLUMNS = ["time", "alert", "stream", "value", "webhook", "attempts", "error"]


def alert_rows(store: Any, user: str) -> pd.DataFrame:
    """``user``'s alerts, one row each, oldest first."""
    rows = [{"id": a.id, "stream": f"{a.symbol}/{a.interval}", "condition": a.condition,
             "when": "once" if a.once else "every time", "on": "yes" if a.active else "no"}
            for a in alerts.list(store, user)]  # fmt: skip
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def fired_rows(store: Any, user: str, limit: int = 100) -> pd.DataFrame:
    """``user``'s most recently fired alerts, newest first (time: the candle's open, UTC)."""
    rows = [{"time": datetime.fromtimestamp(f.open_time / 1000, UTC).strftime("%Y-%m-%d %H:%M"), "alert": f.alert_id,
             "stream": f"{f.symbol}/{f.interval}", "value": f.value, "webhook": f.delivery, "attempts": f.attempts,
             "error": f.last_error or ""}
            for f in alerts.fired(store, user, limit=limit)]  # fmt: skip
    return pd.DataFrame(rows, columns=FIRED_COLUMNS)


class AlertsView:
    """Per session: one user's alerts and fired alerts; :meth:`refresh` re-reads them."""

    def __init__(self, store: Any, user: str) -> None:
        if not user:
            raise ValueError("user must be the logged-in user's name")
        self.store = store
        self.user = user
        self.webhook = pn.pane.Markdown("", name="webhook")
        self.alerts = _table(ALERT_COLUMNS, 160)
        self.fired = _table(FIRED_COLUMNS, 220)
        self.panel = pn.Column(self.webhook, self.alerts, self.fired, sizing_mode="stretch_width")
        self.refresh()

    def refresh(self) -> None:
        hook = alerts.webhook(self.store, self.user)
        self.webhook.object = f"Webhook: {hook or 'none'}"
        self.alerts.value = alert_rows(self.store, self.user)
        self.fired.value = fired_rows(self.store, self.user)


def _table(columns: list[str], height: int) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(pd.DataFrame(columns=columns), disabled=True, show_index=False, selectable=False,
                                sizing_mode="stretch_width", height=height)  # fmt: skip
