"""The live dashboard served by ``panel serve apps/dashboard.py`` and the ``kit up`` job.

Layout of this layer (the served scripts in ``apps/`` stay thin; every callback lives here,
because Bokeh clears a served script's globals when its session ends):

- :mod:`kit.dashboard.auth`: ``KitLoginHandler`` (the ``panel.auth`` entry point ``kit``), checks
  passwords against the users table off the event loop, throttled (:mod:`kit.dashboard.throttle`);
  the signed session (``kit_session``: user and session generation) and who may open what.
- :mod:`kit.dashboard.guard`: every per-application request (page, Bokeh WebSocket, autoload,
  metadata) authorised on connect, security headers, and the closing of revoked sessions' sockets.
- :mod:`kit.dashboard.hub`: the process-wide :class:`~kit.dashboard.hub.Hub`, one feed (or the
  relayed feed, with ``KIT_REDIS_URL``) and one indicator engine shared by every session.
- :mod:`kit.dashboard.live`: ``/kit/live``, each stream's candles encoded once and written to every
  page's socket; the page's script applies them to its chart.
- :mod:`kit.dashboard.menu`: the chart's indicator menu (overlays over the price, panes under it),
  computed once per stream by the hub's engine; :mod:`kit.dashboard.panes` draws the panes.
- :mod:`kit.dashboard.chart`, :mod:`kit.dashboard.market`, :mod:`kit.dashboard.glance` (my
  strategies at a glance), :mod:`kit.dashboard.mine`, :mod:`kit.dashboard.admin`: the per-session views.
- :mod:`kit.dashboard.timeline` (the admin plots' samples, no I/O), :mod:`kit.dashboard.opswatch`
  (one sampler per process) and :mod:`kit.dashboard.opsplots` (the admin page's plots).
- :mod:`kit.dashboard.app`: builders the served scripts call; :func:`~kit.dashboard.app.setup`
  for ``--setup``; :mod:`kit.dashboard.routes`: the extra HTTP routes (``--plugins``).
- :mod:`kit.dashboard.up`: ``kit up`` (simulator + daemon + dashboard) and ``kit dashboard``.

Nothing here is imported by ``import kit`` or by the daemon: panel loads only in the dashboard.
"""
