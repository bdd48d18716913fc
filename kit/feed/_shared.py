"""One feed per event loop, for notebooks and servers."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from kit.feed._feed import Feed

_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Feed] = weakref.WeakKeyDictionary()


def shared_feed(**kwargs: Any) -> Feed:
    """The process-wide :class:`Feed` of the running event loop (created on first use).

    For notebooks and the Panel server: every cell or session that calls this shares one
    exchange connection. Call it from the loop (a coroutine, a loop callback, a Jupyter cell);
    called outside any loop it returns a feed that binds to the first loop that starts it.
    Keyword arguments apply only when the feed is first created.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        # Called outside a loop (a plain notebook cell on an old kernel, a module import): one
        # feed that binds to the first loop it is started on.
        global _unbound
        if _unbound is None or (_unbound.loop is not None and not _unbound.loop.is_running()):
            _unbound = Feed(**kwargs)
        return _unbound
    feed = _shared.get(loop)
    if feed is None:
        feed = _unbound if _unbound is not None and _unbound.loop is loop else Feed(**kwargs)
        _shared[loop] = feed
    return feed


_unbound: Feed | None = None
