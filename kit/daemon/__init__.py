"""``kit daemon``: every promoted strategy of every user, 24/7, on one shared feed.

    from kit.daemon import Daemon, DaemonConfig
    await Daemon(DaemonConfig(status_port=9401)).run()

Never imports vectorbt or panel (``/status`` reports ``modules`` to prove it). See
:mod:`kit.daemon._daemon` for the flow of a candle and :mod:`kit.daemon._book` for the
missed-candle and failure policies.
"""

from kit.daemon._book import Book
from kit.daemon._config import DaemonConfig
from kit.daemon._daemon import Daemon, run

__all__ = ["Book", "Daemon", "DaemonConfig", "run"]
