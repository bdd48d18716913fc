"""Sweep chunks as tasks on a Dask cluster: ``sweep(..., client=...)`` or ``KIT_DASK_SCHEDULER``.

dask and distributed are imported only inside :func:`connect` and :func:`run_chunks`, that is only
when a sweep actually goes to a cluster: ``import kit``, a local sweep, the daemon and the dashboard
never load them (they take about a second and start threads of their own).

The cluster only changes where chunks run, never what they compute: every chunk is the same pure
function of (parameter sets, candles, fill model, interval) as in a local sweep, and its rows are
put back in chunk order, so the table equals the local one to the last digit. Dask recomputes the
chunks of a worker that dies (its results included, when the client had not fetched them yet).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

#: The environment variable naming the scheduler a sweep uses when ``client`` is not given.
SCHEDULER_ENV = "KIT_DASK_SCHEDULER"
# A scheduler that does not answer within this is a wrong address, not a slow cluster.
_CONNECT_SECONDS = 10
_CONNECT_TIMEOUT = f"{_CONNECT_SECONDS}s"


def scheduler_from_env() -> str | None:
    """``KIT_DASK_SCHEDULER`` (e.g. ``tcp://10.0.0.5:8786``), or None when unset or empty."""
    # Read here rather than in kit.settings: only a sweep ever needs it.
    return os.environ.get(SCHEDULER_ENV, "").strip() or None


@contextmanager
def connect(client: Client | str) -> Iterator[Client]:
    """The caller's client as is, or a client for a scheduler address, closed on exit."""
    from distributed import Client

    if isinstance(client, Client):
        yield client
        return
    if not isinstance(client, str) or not client:
        raise TypeError(f"client must be a dask.distributed.Client or a scheduler address, got {client!r}")
    _probe(client)
    try:
        own = Client(client, timeout=_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {client}: {exc}") from None
    try:
        yield own
    finally:
        own.close()


def _probe(address: str) -> None:
    """A one-line :class:`ConfigError` for a malformed or unreachable TCP address, before any Client.

    A Client whose connection failed leaves a half-started object whose finaliser later blocks
    20 s and prints a traceback at exit; a plain socket says the same thing cleanly.
    """
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return  # inproc, ucx, ws...: left to the Client
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=_CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def run_chunks(
    client: Client,
    fn: Callable[..., list[dict[str, Any]]],
    chunks: Sequence[Sequence[Any]],
    data: pd.DataFrame,
    args: tuple[Any, ...],
    name: str,
    on_done: Callable[[int], None],
) -> list[list[dict[str, Any]]]:
    """``[fn(chunk, data, *args) for chunk in chunks]`` as Dask tasks, in chunk order.

    ``data`` leaves the client once, scattered to every worker, and each task names it rather than
    carrying a copy (a worker that joins later, or whose copy the scheduler dropped, fetches it from
    a peer); ``on_done`` gets the size of each chunk as it completes (the progress bar).
    """
    from distributed import as_completed

    # A fresh key per sweep, so two sweeps on one cluster never share (or cancel) each other's tasks.
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    data_future = client.scatter(data, broadcast=True, hash=False)
    futures = [
        client.submit(fn, chunk, data_future, *args, key=f"sweep-{run}-{i}", pure=False)
        for i, chunk in enumerate(chunks)
    ]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[list[dict[str, Any]] | None] = [None] * len(chunks)
    try:
        # The client's own loop: as_completed would otherwise look for a default client.
        for future, rows in as_completed(futures, loop=client.loop, with_results=True):
            i = position[future.key]
            results[i] = rows
            on_done(len(chunks[i]))
    finally:
        # Done, failed or interrupted: free the candles and any chunk still queued on the cluster.
        client.cancel([*futures, data_future])
    return results  # type: ignore[return-value]  # every slot was filled, or as_completed raised
