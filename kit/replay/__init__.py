"""Replay recorded candles through the live path (simulator, feed, engine, live rules, paper broker).

``kit.replay(strategies, data)`` returns per strategy the same ``.trades`` frame as a backtest;
the parity test (tests/test_replay_parity.py) proves they are equal on real data with outages.
"""

from kit.replay._replay import ReplayResult, ReplayRun, infer_interval, replay, replay_async

__all__ = ["ReplayResult", "ReplayRun", "infer_interval", "replay", "replay_async"]
