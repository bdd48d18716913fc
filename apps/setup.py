"""``panel serve --setup apps/setup.py``: runs once per server process, before any session.

Installs the authorisation callback (admin pages for admins only), migrates the database and
creates the process's shared hub (one feed and one indicator engine for every session).
"""

from kit.dashboard.app import setup

setup()
