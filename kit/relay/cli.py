"""``kit relay``: hold the one exchange connection and republish it to Redis."""

from __future__ import annotations

import asyncio

import typer

from kit.feed import Feed
from kit.relay import Keys, Relay
from kit.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("relay")
    def relay(
        redis_url: str = typer.Option(None, "--redis-url", help="default KIT_REDIS_URL"),
        prefix: str = typer.Option(None, help="key prefix shared with the readers (default KIT_REDIS_PREFIX, kit)"),
        history: int = typer.Option(1000, help="closed candles seeded into a newly demanded stream"),
    ) -> None:
        """Share this host's exchange feed with other processes and hosts through Redis."""
        key_prefix = prefix or Settings.from_env().redis_prefix

        async def main() -> None:
            async with Feed() as feed:
                r = Relay(feed, redis_url, keys=Keys(key_prefix), history=history)
                await r.run()

        asyncio.run(main())
