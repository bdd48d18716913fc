"""The simulator's matching core: accounts, orders, trades and fills, with no I/O.

Deterministic rules (the whole contract; README's simulator section repeats them):

- **Price now.** The reference price at simulated time ``t`` is the open of the base candle in
  progress at ``t`` (``open <= t < end``): an order received right after a close sees the next
  candle's open. The ask is that open x (1 + half-spread), the bid that open x (1 - half-spread).
- **MARKET** orders fill in full at once at the ask (BUY) or bid (SELL). With no candle in progress
  (a real outage, or past the data) the order is accepted as NEW and fills at the open (± the
  half-spread) of the first candle that exists after ``t``; if the account cannot pay by then it
  EXPIRES. ``quoteOrderQty`` buys or sells ``quoteOrderQty / price`` rounded down to the step.
- **LIMIT** orders that are marketable on arrival (BUY at or above the ask, SELL at or below the
  bid) fill at once at the ask/bid, as a taker. Otherwise GTC orders rest (IOC and FOK expire,
  LIMIT_MAKER is rejected if it would take). A resting order fills at its own price on a *later*
  candle (open >= the order's time) whose range reaches it (BUY: low <= price, SELL: high >=
  price), at most ``volume_share`` of that candle's volume per order per candle (the rest stays
  open: partial fills), with the trade time the candle's close time. A candle with no volume fills
  nothing.
- **STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT** are rejected if their stop would trigger at once; they
  trigger on a later candle whose range reaches the stop (stop-loss: SELL low <= stop, BUY high >=
  stop; take-profit the other way round) and work as a resting LIMIT from the next candle on.
- **Balances**: open orders lock what they may spend (BUY: price x quantity x (1 + commission) of
  the quote asset; SELL: the quantity of the base asset); a fill moves the amounts; a cancel or
  expiry unlocks the rest. Commission is charged in the quote asset, per account (default 0.1%).
- **Client order ids** are unique among an account's *open* orders only (as on Binance): a repeat
  of a filled or cancelled order's id is accepted and is a new order. Queries by client order id
  find the most recent order with that id.

The core keeps every order and trade it ever saw: the record tests compare a client's ledger with.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping

from kit.exchange._accounts import AccountSpec
from kit.exchange._data import MarketData, Series
from kit.exchange._records import (
    EPS,
    AccountState,
    Listener,
    Order,
    OrderRejected,
    OrderRequest,
    SymbolRules,
    Trade,
    floor_step,
    is_multiple,
)


class Matcher:
    """Accounts, orders and trades over the simulator's candles; see the module docstring for the rules.

    Every method takes the simulated time ``now`` (ms) explicitly; :meth:`advance` applies every
    fill due up to ``now`` and is called before anything reads or changes state.
    """

    def __init__(
        self,
        data: MarketData,
        accounts: Iterable[AccountSpec] = (),
        *,
        half_spread_bps: float = 0.0,
        volume_share: float | None = 0.1,
        rules: Mapping[str, SymbolRules] | None = None,
        split: Callable[[str], tuple[str, str]] | None = None,
    ) -> None:
        if not isinstance(half_spread_bps, (int, float)) or not 0 <= half_spread_bps < 1000:
            raise ValueError(f"half_spread_bps must be in [0, 1000), got {half_spread_bps!r}")
        if volume_share is not None and not 0 < volume_share <= 1:
            raise ValueError(f"volume_share must be in (0, 1] or None, got {volume_share!r}")
        self.data = data
        self.half_spread = half_spread_bps / 10_000.0
        self.volume_share = volume_share
        self.accounts: dict[str, AccountState] = {}
        for spec in accounts:
            self.add_account(spec)
        self.rules: dict[str, SymbolRules] = dict(rules or {})
        for s in data.symbols:
            if s not in self.rules:
                base, quote = split(s) if split else (s[:-4], s[-4:])
                series = data.base(s)
                price = series.c[len(series.c) // 2] if len(series) else 1.0
                self.rules[s] = SymbolRules.for_price(s, base, quote, price)
        self.orders: list[Order] = []  # every order ever accepted, by id (order_id = index + 1)
        self.trades: list[Trade] = []  # every trade, by id (trade_id = index + 1)
        # Indexes, so that an order costs the same after a million others: open orders (in id
        # order, which is the order fills are applied in), per account; the latest order per
        # (account, symbol, client order id); trades per account and per order.
        self._open: dict[int, Order] = {}
        self._open_by_account: dict[str, dict[int, Order]] = {}
        self._by_account: dict[str, list[Order]] = {}
        self._by_client: dict[tuple[str, str, str], Order] = {}
        self._trades_by_account: dict[str, list[Trade]] = {}
        self._trades_by_order: dict[int, list[Trade]] = {}
        self.listeners: list[Listener] = []

    def add_account(self, spec: AccountSpec) -> None:
        if spec.key in self.accounts:
            raise ValueError(f"account {spec.masked} exists")
        self.accounts[spec.key] = AccountState(spec, free={a: float(v) for a, v in spec.balances.items()})

    # ------------------------------------------------------------------ prices
    def _series(self, symbol: str) -> Series:
        return self.data.base(symbol)

    def _in_progress(self, s: Series, t: int) -> int | None:
        i = bisect.bisect_right(s.open, t) - 1
        return i if i >= 0 and t < s.end[i] else None

    def quote_at(self, symbol: str, t: int) -> tuple[float, float] | None:
        """(bid, ask) at ``t``, or None when no candle is in progress (an outage, or past the data)."""
        s = self._series(symbol)
        i = self._in_progress(s, t)
        if i is None:
            return None
        o = s.o[i]
        return o * (1 - self.half_spread), o * (1 + self.half_spread)

    def _ref_price(self, symbol: str, t: int) -> float:
        """A price for checks when nothing is in progress: the last close before ``t`` (else the first open)."""
        s = self._series(symbol)
        i = bisect.bisect_right(s.end, t) - 1
        return s.c[i] if i >= 0 else s.o[0]

    # ------------------------------------------------------------------ orders
    def check(self, key: str, req: OrderRequest, now: int) -> None:
        """Everything :meth:`place` checks, placing nothing (``POST /api/v3/order/test``)."""
        self.advance(now)
        self._validate(self.accounts[key], req, now)

    def place(self, key: str, req: OrderRequest, now: int) -> Order:
        """Accept (and perhaps fill) a new order, or raise :class:`OrderRejected`."""
        self.advance(now)
        acct = self.accounts[key]
        rules, qty, price, stop = self._validate(acct, req, now)
        order = Order(
            order_id=len(self.orders) + 1,
            client_id=req.client_id or f"kitsim{len(self.orders) + 1:014d}",
            account=key,
            symbol=req.symbol,
            side=req.side,
            type=req.type,
            time_in_force=req.time_in_force or ("GTC" if req.type != "MARKET" else ""),
            price=price or 0.0,
            stop_price=stop or 0.0,
            orig_qty=qty,
            orig_quote_qty=req.quote_qty or 0.0,
            time=now,
            update_time=now,
            working_time=-1 if stop else now,
        )
        s = self._series(req.symbol)
        quote = self.quote_at(req.symbol, now)
        self.orders.append(order)
        self._by_account.setdefault(key, []).append(order)
        self._by_client[(key, order.symbol, order.client_id)] = order
        if req.type == "MARKET":
            if quote is not None:
                self._fill(order, quote[1] if req.side == "BUY" else quote[0], qty, now, maker=False)
            else:
                order.next_idx = bisect.bisect_right(s.open, now)
                self._opened(order)
            if order.status == "NEW":
                self._notify(order, None)
            return order
        marketable = (
            quote is not None
            and not stop
            and (
                price >= quote[1] if req.side == "BUY" else price <= quote[0]  # type: ignore[operator]
            )
        )
        if marketable and quote is not None:
            self._fill(order, quote[1] if req.side == "BUY" else quote[0], qty, now, maker=False)
            return order
        if order.time_in_force in ("IOC", "FOK"):
            order.status, order.reason = "EXPIRED", "not marketable on arrival"
            self._notify(order, None)
            return order
        self._lock(acct, order, rules)
        # "A later candle": one opening at or after the order (at max speed an order sent at a
        # close arrives exactly at the next candle's open, and that whole candle is later).
        order.next_idx = bisect.bisect_left(s.open, now)
        self._opened(order)
        self._notify(order, None)
        return order

    def _validate(
        self, acct: AccountState, req: OrderRequest, now: int
    ) -> tuple[SymbolRules, float, float | None, float | None]:
        rules = self.rules[req.symbol]
        t, side = req.type, req.side
        price, stop = req.price, req.stop_price
        if t in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and price is None:
            raise OrderRejected(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if t in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and stop is None:
            raise OrderRejected(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        if t in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and req.time_in_force is None:
            raise OrderRejected(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        if t in ("MARKET", "LIMIT_MAKER") and req.time_in_force is not None:
            raise OrderRejected(-1106, "Parameter 'timeInForce' sent when not required.")
        if t != "MARKET" and req.quote_qty is not None:
            raise OrderRejected(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if t not in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and stop is not None:
            raise OrderRejected(-1106, "Parameter 'stopPrice' sent when not required.")
        if t == "MARKET" and price is not None:
            raise OrderRejected(-1106, "Parameter 'price' sent when not required.")
        if t == "MARKET" and (req.quantity is None) == (req.quote_qty is None):
            raise OrderRejected(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                if req.quantity is None else "Send 'quantity' or 'quoteOrderQty', not both."
            )  # fmt: skip
        if t != "MARKET" and req.quantity is None:
            raise OrderRejected(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        for p in (price, stop):
            if p is not None and (p < rules.min_price or p > rules.max_price or not is_multiple(p, rules.tick)):
                raise OrderRejected(-1013, "Filter failure: PRICE_FILTER")
        quote = self.quote_at(req.symbol, now)
        ref = (quote[1] if side == "BUY" else quote[0]) if quote else self._ref_price(req.symbol, now)
        if req.quote_qty is not None:
            if req.quote_qty <= 0:
                raise OrderRejected(-1013, "Filter failure: NOTIONAL")
            qty = floor_step(req.quote_qty / ref, rules.step)
        else:
            qty = req.quantity  # type: ignore[assignment]
            if not is_multiple(qty, rules.step):
                raise OrderRejected(-1013, "Filter failure: LOT_SIZE")
        if not rules.min_qty * (1 - EPS) <= qty <= rules.max_qty:
            raise OrderRejected(-1013, "Filter failure: LOT_SIZE")
        notional = qty * (price if price is not None else ref)
        if notional < rules.min_notional * (1 - EPS) or (t != "MARKET" and notional > rules.max_notional):
            raise OrderRejected(-1013, "Filter failure: NOTIONAL")
        open_orders = self._open_by_account.get(acct.spec.key, {}).values()
        n_open = sum(1 for o in open_orders if o.symbol == req.symbol)
        if t != "MARKET" and n_open >= rules.max_num_orders:
            raise OrderRejected(-1013, "Filter failure: MAX_NUM_ORDERS")
        same = self._by_client.get((acct.spec.key, req.symbol, req.client_id)) if req.client_id else None
        if same is not None and same.is_open:
            raise OrderRejected(-2010, "Duplicate order sent.")
        if stop is not None:
            q = quote or (ref, ref)
            hit = (
                (q[0] <= stop if side == "SELL" else q[1] >= stop)
                if t == "STOP_LOSS_LIMIT"
                else (q[0] >= stop if side == "SELL" else q[1] <= stop)
            )
            if hit:
                raise OrderRejected(-2010, "Stop price would trigger immediately.")
        if t == "LIMIT_MAKER" and quote is not None and (price >= quote[1] if side == "BUY" else price <= quote[0]):  # type: ignore[operator]
            raise OrderRejected(-2010, "Order would immediately match and take.")
        # Funds: what the order may spend (a MARKET order in an outage is checked when it fills).
        if t != "MARKET" or quote is not None:
            if side == "SELL":
                need, asset = qty, rules.base
            else:
                need, asset = qty * (ref if t == "MARKET" else price) * (1 + acct.spec.commission), rules.quote  # type: ignore[operator]
            if not _covers(acct.free.get(asset, 0.0), need):
                raise OrderRejected(-2010, "Account has insufficient balance for requested action.")
        return rules, qty, price, stop

    def _lock(self, acct: AccountState, order: Order, rules: SymbolRules) -> None:
        if order.side == "BUY":
            asset, amount = rules.quote, order.orig_qty * order.price * (1 + acct.spec.commission)
        else:
            asset, amount = rules.base, order.orig_qty
        acct.free[asset] = _sub(acct.free.get(asset, 0.0), amount)
        acct.locked[asset] = acct.locked.get(asset, 0.0) + amount
        order.locked, order.lock_asset = amount, asset

    def _unlock(self, order: Order) -> None:
        if order.locked:
            acct = self.accounts[order.account]
            a = order.lock_asset
            acct.locked[a] = _sub(acct.locked.get(a, 0.0), order.locked)
            acct.free[a] = acct.free.get(a, 0.0) + order.locked
            order.locked = 0.0

    def _fill(self, order: Order, price: float, qty: float, t: int, *, maker: bool) -> Trade | None:
        """Trade ``qty`` of ``order`` at ``price`` at time ``t``: balances, the trade, the order's state."""
        acct = self.accounts[order.account]
        rules = self.rules[order.symbol]
        c = acct.spec.commission
        notional = price * qty
        commission = notional * c
        # (what the order's lock releases, what is paid, what is received), in amounts of assets.
        if order.side == "BUY":
            release, pay, get = order.price * qty * (1 + c), (rules.quote, notional + commission), (rules.base, qty)
        else:
            release, pay, get = qty, (rules.base, qty), (rules.quote, notional - commission)
        if order.locked:
            release = min(order.locked, release)
            order.locked -= release
            a = order.lock_asset
            acct.locked[a] = _sub(acct.locked.get(a, 0.0), release)
            acct.free[a] = acct.free.get(a, 0.0) + release
        if not _covers(acct.free.get(pay[0], 0.0), pay[1]):
            self._expire(order, t, "insufficient balance when the order could fill")
            return None
        acct.free[pay[0]] = _sub(acct.free.get(pay[0], 0.0), pay[1])
        acct.free[get[0]] = acct.free.get(get[0], 0.0) + get[1]
        trade = Trade(
            trade_id=len(self.trades) + 1, order_id=order.order_id, account=order.account, symbol=order.symbol,
            side=order.side, price=price, qty=qty, quote_qty=notional, commission=commission,
            commission_asset=rules.quote, time=t, is_maker=maker,
        )  # fmt: skip
        self.trades.append(trade)
        self._trades_by_account.setdefault(order.account, []).append(trade)
        self._trades_by_order.setdefault(order.order_id, []).append(trade)
        order.executed = round(order.executed + qty, 12)
        order.cum_quote += notional
        order.update_time = acct.update_time = t
        if order.remaining <= order.orig_qty * EPS:
            order.executed = order.orig_qty
            order.status = "FILLED"
            self._unlock(order)
            self._closed(order)
        else:
            order.status = "PARTIALLY_FILLED"
        self._notify(order, trade)
        return trade

    def _expire(self, order: Order, t: int, reason: str) -> None:
        order.status, order.reason, order.update_time = "EXPIRED", reason, t
        self._unlock(order)
        self._closed(order)
        self._notify(order, None)

    def cancel(self, key: str, symbol: str, order_id: int | None, client_id: str | None, now: int) -> Order:
        self.advance(now)
        order = self.find(key, symbol, order_id, client_id)
        if not order.is_open:
            raise OrderRejected(-2011, "Unknown order sent.")
        order.status, order.update_time = "CANCELED", now
        self._unlock(order)
        self._closed(order)
        self.accounts[key].update_time = now
        self._notify(order, None)
        return order

    def cancel_all(self, key: str, symbol: str, now: int) -> list[Order]:
        self.advance(now)
        ids = [o for o in self._open_by_account.get(key, {}).values() if o.symbol == symbol]
        if not ids:
            raise OrderRejected(-2011, "Unknown order sent.")
        return [self.cancel(key, symbol, o.order_id, None, now) for o in ids]

    def find(self, key: str, symbol: str, order_id: int | None, client_id: str | None) -> Order:
        """The account's order by id, else the most recent one with that client order id (-2013 if none)."""
        if order_id is not None:
            if 1 <= order_id <= len(self.orders):
                o = self.orders[order_id - 1]
                if o.account == key and o.symbol == symbol:
                    return o
        elif client_id is not None:
            o = self._by_client.get((key, symbol, client_id))
            if o is not None:
                return o
        raise OrderRejected(-2013, "Order does not exist.")

    def open_orders(self, key: str, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open_by_account.get(key, {}).values() if symbol is None or o.symbol == symbol]

    def account_orders(self, key: str, symbol: str) -> list[Order]:
        return [o for o in self._by_account.get(key, ()) if o.symbol == symbol]

    def account_trades(self, key: str, symbol: str) -> list[Trade]:
        return [t for t in self._trades_by_account.get(key, ()) if t.symbol == symbol]

    def order_trades(self, order_id: int) -> list[Trade]:
        return list(self._trades_by_order.get(order_id, ()))

    def _opened(self, order: Order) -> None:
        self._open[order.order_id] = order
        self._open_by_account.setdefault(order.account, {})[order.order_id] = order

    def _closed(self, order: Order) -> None:
        self._open.pop(order.order_id, None)
        self._open_by_account.get(order.account, {}).pop(order.order_id, None)

    # ------------------------------------------------------------------ time
    def advance(self, now: int) -> None:
        """Apply every fill due by simulated time ``now`` (idempotent; orders in id order)."""
        for order in list(self._open.values()):  # inserted in id order
            s = self._series(order.symbol)
            n = len(s.open)
            while order.is_open and order.next_idx < n:
                i = order.next_idx
                if order.type == "MARKET":
                    if s.open[i] > now:
                        break
                    hs = self.half_spread
                    price = s.o[i] * (1 + hs if order.side == "BUY" else 1 - hs)
                    qty = order.orig_qty
                    if order.orig_quote_qty:
                        qty = floor_step(order.orig_quote_qty / price, self.rules[order.symbol].step)
                        order.orig_qty = qty
                    if qty <= 0:
                        self._expire(order, s.open[i], "quoteOrderQty buys less than one step")
                    else:
                        self._fill(order, price, qty, s.open[i], maker=False)
                    break
                if s.end[i] > now:
                    break
                order.next_idx = i + 1
                self._on_candle(order, s, i)

    def _on_candle(self, order: Order, s: Series, i: int) -> None:
        lo, hi, t = s.lo[i], s.h[i], s.end[i] - 1
        if order.working_time < 0:  # a stop order waiting for its trigger
            stop = order.stop_price
            if order.type == "STOP_LOSS_LIMIT":
                hit = lo <= stop if order.side == "SELL" else hi >= stop
            else:
                hit = hi >= stop if order.side == "SELL" else lo <= stop
            if hit:
                order.working_time = order.update_time = t
                self._notify(order, None)
            return
        p = order.price
        if not (lo <= p if order.side == "BUY" else hi >= p):
            return
        qty = order.remaining
        if self.volume_share is not None:
            cap = floor_step(s.v[i] * self.volume_share, self.rules[order.symbol].step)
            qty = min(qty, cap)
        if qty > 0:
            self._fill(order, p, qty, t, maker=True)

    def _notify(self, order: Order, trade: Trade | None) -> None:
        for listener in self.listeners:
            listener(order.account, order, trade)


def _covers(have: float, need: float) -> bool:
    return have >= need * (1 - EPS) - 1e-12


def _sub(a: float, b: float) -> float:
    """``a - b`` with float dust (from amounts that cancel exactly in decimal) snapped to zero."""
    r = a - b
    return 0.0 if abs(r) <= 1e-9 * max(abs(a), abs(b), 1e-9) else r
