"""The admin page (``/ops``): feed, sessions, daemon status and heartbeat, users, recent errors.

Admins only: :func:`kit.dashboard.auth.authorize` answers 403 to everyone else.
"""

from kit.dashboard.app import admin_page

admin_page().servable(title="kit · admin")
