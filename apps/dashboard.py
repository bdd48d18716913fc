"""The live dashboard: Market and My strategies, per logged-in user.

Serve it with ``kit dashboard`` (or ``kit up``), which runs::

    panel serve apps/dashboard.py apps/ops.py --setup apps/setup.py --index dashboard \
        --oauth-provider kit --cookie-secret "$SECRET" --admin

Everything with a callback lives in :mod:`kit.dashboard` (this script's globals are cleared
when its session ends).
"""

from kit.dashboard.app import dashboard

dashboard().servable(title="kit · dashboard")
