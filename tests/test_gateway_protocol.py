"""The gateway's WebSocket protocol without sockets: every request answered with its id, every rule."""

from __future__ import annotations

import json

import pytest

from kit.gateway import _protocol as P
from kit.gateway._streams import Stream, StreamError, parse
from kit.indicators import spec

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def proto(**kw: object) -> P.Protocol:
    return P.Protocol(lambda: SYMBOLS, **kw)  # type: ignore[arg-type]


def answer(cmd: P.Command) -> dict:
    assert isinstance(cmd, P.Reply), cmd
    return json.loads(cmd.text)


def req(p: P.Protocol, now: float = 0.0, **msg: object) -> P.Command:
    return p.receive(json.dumps(msg), now)


def test_stream_names_parse_to_concrete_streams_and_back():
    assert parse("btcusdt@kline_1m").expand(SYMBOLS) == (Stream("BTCUSDT", "1m"),)
    s = parse("ethusdt@indicator_5m_rsi(14)").expand(SYMBOLS)[0]
    assert s == Stream("ETHUSDT", "5m", spec("rsi", 14)) and s.name == "ethusdt@indicator_5m_rsi(14)"
    assert [x.name for x in parse("*@indicator_1h_macd(12,26,9)").expand(SYMBOLS)] == [
        "btcusdt@indicator_1h_macd(12,26,9)",
        "ethusdt@indicator_1h_macd(12,26,9)",
    ]
    for bad in ("btcusdt", "btcusdt@kline_7m", "btcusdt@trade", "b$@kline_1m", "btcusdt@indicator_1m_",
                "btcusdt@indicator_1m_nope(1)", "btcusdt@indicator_1m_rsi(0)", "x" * 300):  # fmt: skip
        with pytest.raises(StreamError):
            parse(bad, frozenset(SYMBOLS))
    with pytest.raises(StreamError, match="unknown symbol"):
        parse("dogeusdt@kline_1m", frozenset(SYMBOLS))


def test_ping_and_list_are_answered_with_their_id():
    p = proto()
    assert answer(req(p, method="PING", id=7)) == {"result": "pong", "id": 7}
    assert answer(req(p, method="LIST_SUBSCRIPTIONS", id="a")) == {"result": [], "id": "a"}


def test_subscribe_expands_wildcards_and_unsubscribe_releases_only_unreferenced_streams():
    p = proto()
    cmd = req(p, method="SUBSCRIBE", params=["*@kline_1m", "btcusdt@kline_1m"], id=1)
    assert isinstance(cmd, P.Subscribe) and cmd.since is None
    assert set(cmd.streams) == {Stream("BTCUSDT", "1m"), Stream("ETHUSDT", "1m")}
    assert json.loads(p.subscribed(cmd)) == {"result": None, "id": 1}
    assert answer(req(p, method="LIST_SUBSCRIPTIONS", id=2))["result"] == ["*@kline_1m", "btcusdt@kline_1m"]
    again = req(p, method="SUBSCRIBE", params=["btcusdt@kline_1m"], id=3)
    assert isinstance(again, P.Subscribe) and again.streams == () and again.names == ()
    un = req(p, method="UNSUBSCRIBE", params=["*@kline_1m"], id=4)
    assert isinstance(un, P.Unsubscribe) and un.streams == (Stream("ETHUSDT", "1m"),)  # BTC is still named
    un = req(p, method="UNSUBSCRIBE", params=["btcusdt@kline_1m", "never@kline_1m"], id=5)
    assert isinstance(un, P.Unsubscribe) and un.streams == (Stream("BTCUSDT", "1m"),)
    assert p.streams == 0


def test_since_is_carried_with_the_subscription():
    p = proto()
    cmd = req(p, method="SUBSCRIBE", params=["btcusdt@kline_1m"], since=1_700_000_000_000, id=1)
    assert isinstance(cmd, P.Subscribe) and cmd.since == 1_700_000_000_000
    for bad in (-1, "1", 1.5, True):
        assert answer(req(p, now=1.0 + 0.3 * (bad is True), method="SUBSCRIBE", params=["btcusdt@kline_1m"],
                          since=bad, id=2))["error"]["code"] == P.INVALID_VALUE  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", P.INVALID_JSON),
        (b"\xff\xfe", P.INVALID_JSON),
        ("[1, 2]", P.INVALID_REQUEST),
        ('{"method": "DELETE", "id": 1}', P.INVALID_REQUEST),
        ('{"method": "SUBSCRIBE", "params": "btcusdt@kline_1m", "id": 1}', P.INVALID_VALUE),
        ('{"method": "SUBSCRIBE", "params": [], "id": 1}', P.INVALID_VALUE),
        ('{"method": "SUBSCRIBE", "params": [5], "id": 1}', P.INVALID_VALUE),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@kline_9m"], "id": 1}', P.INVALID_VALUE),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1, "x": 1}', P.UNKNOWN_PROPERTY),
        ('{"method": "PING", "id": {"a": 1}}', P.INVALID_VALUE),
        ('{"method": "PING", "since": 5, "id": 1}', P.UNKNOWN_PROPERTY),
        ('{"method": "LOGIN", "params": [], "id": 1}', P.INVALID_VALUE),
        ('{"method": "PING", "id": 1, "pad": "' + "x" * 20_000 + '"}', P.INVALID_REQUEST),
    ],
)
def test_malformed_frames_get_an_error_with_a_code_never_silence(frame, code):
    got = answer(proto().receive(frame, 0.0))
    assert got["error"]["code"] == code and got["error"]["msg"]


def test_more_than_five_requests_a_second_are_refused_and_counted():
    p = proto(rate=5)
    codes = [answer(req(p, now=0.1 * i, method="PING", id=i)) for i in range(8)]
    assert [("error" in c) for c in codes] == [False] * 5 + [True] * 3
    assert codes[5]["error"]["code"] == P.TOO_MANY_REQUESTS and codes[5]["id"] == 5
    assert p.rate_limited == 3
    assert "result" in answer(req(p, now=1.31, method="PING", id=9))  # the window moved on


def test_a_connection_holds_at_most_max_streams():
    p = proto(max_streams=3, rate=100)
    cmd = req(p, method="SUBSCRIBE", params=["*@kline_1m", "btcusdt@kline_5m"], id=1)
    assert isinstance(cmd, P.Subscribe)
    p.subscribed(cmd)
    got = answer(req(p, method="SUBSCRIBE", params=["*@kline_1h"], id=2))
    assert got["error"]["code"] == P.TOO_MANY_STREAMS and got["id"] == 2
    assert isinstance(req(p, method="SUBSCRIBE", params=["btcusdt@kline_1m"], id=3), P.Subscribe)  # not new


def test_login_is_required_for_market_streams_when_configured():
    p = proto(login_required=True)
    got = answer(req(p, method="SUBSCRIBE", params=["btcusdt@kline_1m"], id=1))
    assert got["error"]["code"] == P.UNAUTHORIZED
    login = req(p, now=0.3, method="LOGIN", params=["kit_abc"], id=2)
    assert isinstance(login, P.Login) and login.token == "kit_abc"
    p.logged_in("alice")
    assert isinstance(req(p, now=0.6, method="SUBSCRIBE", params=["btcusdt@kline_1m"], id=3), P.Subscribe)
