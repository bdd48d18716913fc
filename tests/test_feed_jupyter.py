"""The feed inside a real Jupyter kernel's running loop: top-level await, work between cells."""

from __future__ import annotations

import textwrap

from jupyter_client.manager import start_new_kernel

from tests.fixtures.feed import ROOT, sample_slice


def _run(kc, code: str, timeout: float = 60) -> str:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return text


def test_feed_in_a_jupyter_kernel(tmp_path):
    # A candle file the kernel's simulator serves (the file form, as `kit exchange --data` reads).
    frame = sample_slice("BTCUSDT", "2025-06-01 00:00", "2025-06-01 04:00")
    path = tmp_path / "BTCUSDT_1m_20250601_20250601.csv.gz"
    frame.assign(open_time=frame.index.as_unit("ms").asi8).to_csv(path, index=False)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        _run(
            kc,
            f"""
            import asyncio
            from kit.exchange import ExchangeSimulator
            from kit.feed import shared_feed
            sim = ExchangeSimulator(data={str(tmp_path)!r}, speed=3000, start="2025-06-01 02:00")
            await sim.start()
            feed = shared_feed(ws_url=sim.ws_url, rest_url=sim.rest_url)
            assert feed is shared_feed()
            got = []
            sub = feed.watch("BTCUSDT", "1m", lambda ev: got.append(ev.candle.open_time) if ev.closed else None,
                             history=3)
            """,
        )
        # The watch keeps running on the kernel's loop between cells.
        out = _run(
            kc,
            """
            for _ in range(300):
                if len(got) >= 20:
                    break
                await asyncio.sleep(0.05)
            print(len(got) >= 20, got == sorted(set(got)), all(b - a == 60000 for a, b in zip(got, got[1:])))
            sub.close()
            await feed.stop()
            await sim.stop()
            """,
        )
        assert out.split() == ["True", "True", "True"], out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
