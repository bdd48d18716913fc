"""REST routes of the token's own account under ``/api/v1/account``: its strategies, and the
gateway's one write, switching one of them on or off.

Every route needs ``Authorization: Bearer <token>`` whatever ``market_auth`` says, and answers
only for the token's user: another user's strategy is 404, as a missing one is (nothing tells
that it exists). The write needs the ``trade`` scope (a token created without ``--read-only``)
and checks the token in the store at that moment (never the few-seconds cache of reads), so a
revoked token cannot act. The daemon applies a switch at its next poll, as from the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from kit.gateway import _tokens
from kit.gateway._rest import ApiError
from kit.gateway._tokens import TRADE, Identity
from kit.store import NotFound, strategies

if TYPE_CHECKING:
    from kit.gateway.app import Gateway

log = logging.getLogger("kit.gateway.account")
router = APIRouter(prefix="/api/v1/account", tags=["account"])

_FIELDS = ("id", "name", "symbol", "interval", "mode", "active", "state", "last_signal", "failures", "version")


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


async def reader(request: Request) -> Identity:
    """The token's identity (any scope), else 401."""
    token = _bearer(request)
    ident = await _gw(request).identify(token) if token else None
    if ident is None:
        raise ApiError(401, -2015, "Authorization: a valid Bearer token is required")
    return ident


async def trader(request: Request) -> Identity:
    """The token's identity if it may write (scope ``trade``), checked in the store now; else 401/403."""
    token = _bearer(request)
    ident = await asyncio.to_thread(_tokens.verify, _gw(request).store, token) if token else None
    if ident is None:
        raise ApiError(401, -2015, "Authorization: a valid Bearer token is required")
    if TRADE not in ident.scopes:
        raise ApiError(403, -2015, "this token is read-only: create one without --read-only to switch strategies")
    return ident


def _view(rec: Any) -> dict[str, Any]:
    return {k: getattr(rec, k) for k in _FIELDS}


class Switch(BaseModel):
    """The body of a switch: ``{"active": false}``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    active: bool


@router.get("/strategies", summary="The token's user's strategies (read scope)")
async def list_strategies(request: Request, ident: Annotated[Identity, Depends(reader)]) -> list[dict[str, Any]]:
    recs = await asyncio.to_thread(strategies.list, _gw(request).store, ident.user)
    return [_view(r) for r in recs]


@router.post("/strategies/{strategy_id}/active", summary="Switch one of the user's strategies on or off (trade scope)")
async def switch_strategy(
    request: Request, strategy_id: int, body: Switch, ident: Annotated[Identity, Depends(trader)]
) -> dict[str, Any]:
    try:
        rec = await asyncio.to_thread(strategies.set_active, _gw(request).store, ident.user, strategy_id, body.active)
    except NotFound:
        raise ApiError(404, -2013, f"no strategy {strategy_id} of yours", "strategy_id") from None
    log.info("strategy switched", extra={"user": ident.user, "strategy": strategy_id, "active": body.active,
                                         "token_id": ident.token_id})  # fmt: skip
    return _view(rec)
