"""The simulator's trading accounts and how their requests are signed.

An account is an API key, its secret (HMAC-SHA256) or Ed25519 public key, starting balances and a
commission rate. Accounts come from ``kit exchange --account KEY:SECRET:USDT=10000,BTC=0.5``
(repeatable) or ``--accounts FILE``, a JSON list of
``{"key": ..., "secret": ... | "ed25519_public_key": PEM, "balances": {"USDT": 10000}, "commission": 0.001}``.

Signatures follow Binance: the payload is the query string concatenated with the request body
(no separator), without the ``signature`` parameter; HMAC keys sign it as hex HMAC-SHA256, Ed25519
keys as base64. Secrets are compared in constant time and never logged (an account's ``repr``
shows the key's last 4 characters only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import ConfigError

DEFAULT_COMMISSION = 0.001  # 0.1%, Binance's base spot rate
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{4,128}$")
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")


@dataclass(frozen=True, repr=False)
class AccountSpec:
    """One account as configured: validated, immutable; the matching core copies the balances."""

    key: str
    secret: str = ""
    ed25519_public_key: bytes = b""  # PEM
    balances: Mapping[str, float] = field(default_factory=dict)
    commission: float = DEFAULT_COMMISSION

    def __post_init__(self) -> None:
        if not _KEY_RE.match(self.key):
            raise ConfigError("account key: 4 to 128 letters, digits, '-' or '_'")
        if bool(self.secret) == bool(self.ed25519_public_key):
            raise ConfigError(f"account {self.masked}: give exactly one of a secret or an Ed25519 public key")
        if self.secret and (len(self.secret) < 8 or ":" in self.secret):
            raise ConfigError(f"account {self.masked}: the secret needs at least 8 characters and no ':'")
        if self.ed25519_public_key:
            _ed25519_key(self.ed25519_public_key, self.masked)  # fails now, not at the first request
        for asset, amount in self.balances.items():
            if not _ASSET_RE.match(asset):
                raise ConfigError(f"account {self.masked}: bad asset name {asset!r}")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
                raise ConfigError(f"account {self.masked}: {asset} balance must be a number")
            if amount < 0:
                raise ConfigError(f"account {self.masked}: {asset} balance must be >= 0")
        c = self.commission
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c < 0.1:
            raise ConfigError(f"account {self.masked}: commission must be a rate in [0, 0.1), got {c!r}")

    @property
    def masked(self) -> str:
        """The key as it may appear in logs and errors: its last 4 characters."""
        return "..." + self.key[-4:]

    def __repr__(self) -> str:
        return f"AccountSpec({self.masked}, balances={dict(self.balances)}, commission={self.commission})"

    def verify(self, payload: str, signature: str) -> bool:
        """True if ``signature`` signs ``payload`` with this account's secret or key."""
        if self.secret:
            want = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            return hmac.compare_digest(want, signature.lower())
        from cryptography.exceptions import InvalidSignature  # deferred with the Ed25519 path below

        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            _ed25519_key(self.ed25519_public_key, self.masked).verify(raw, payload.encode())
        except InvalidSignature:
            return False
        return True


def _ed25519_key(pem: bytes, who: str) -> Any:
    # Deferred: cryptography's asymmetric keys (~60 ms) load only for accounts with an Ed25519 key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise ConfigError(f"account {who}: the Ed25519 public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"account {who}: the public key is not an Ed25519 key")
    return key


def parse_balances(text: str, who: str = "account") -> dict[str, float]:
    """``USDT=10000,BTC=0.5`` as ``{"USDT": 10000.0, "BTC": 0.5}``."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        asset, sep, amount = part.partition("=")
        asset = asset.strip().upper()
        try:
            value = float(amount) if sep else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{who}: balances look like USDT=10000,BTC=0.5 (got {part!r})")
        if asset in out:
            raise ConfigError(f"{who}: {asset} given twice")
        out[asset] = value
    return out


def parse_account(text: str) -> AccountSpec:
    """``KEY:SECRET:USDT=10000,BTC=0.5`` (the balances part may be empty)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ConfigError("--account: expected KEY:SECRET:USDT=10000[,BTC=0.5...]")
    key, secret, balances = parts
    who = "account ..." + key[-4:]
    return AccountSpec(key=key, secret=secret, balances=parse_balances(balances, who))


def load_accounts(path: str | Path) -> list[AccountSpec]:
    """Accounts from a JSON file: a list of objects (see the module docstring)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--accounts: {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--accounts: cannot read {str(p)!r} as JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigError("--accounts: the file must hold a JSON list of accounts")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ConfigError(f"--accounts: entry {i} must be an object with a 'key'")
        unknown = sorted(set(item) - {"key", "secret", "ed25519_public_key", "balances", "commission"})
        if unknown:
            raise ConfigError(f"--accounts: entry {i} has unknown fields {unknown}")
        balances = item.get("balances", {})
        if not isinstance(balances, dict):
            raise ConfigError(f'--accounts: entry {i}: balances must be an object like {{"USDT": 10000}}')
        pem = item.get("ed25519_public_key", "")
        out.append(
            AccountSpec(
                key=item["key"],
                secret=str(item.get("secret", "")),
                ed25519_public_key=str(pem).encode() if pem else b"",
                balances={str(k).upper(): v for k, v in balances.items()},
                commission=item.get("commission", DEFAULT_COMMISSION),
            )
        )
    return out


def unique(accounts: Iterable[AccountSpec]) -> dict[str, AccountSpec]:
    """Accounts by key; a key given twice is a configuration error."""
    out: dict[str, AccountSpec] = {}
    for a in accounts:
        if a.key in out:
            raise ConfigError(f"account {a.masked} is given twice")
        out[a.key] = a
    return out


def signed_payload(query: str, body: str) -> tuple[str, str | None]:
    """(the payload a client signed, its ``signature`` value) from the raw query string and body."""
    signature: str | None = None
    parts = []
    for raw in (query, body):
        kept = []
        for item in raw.split("&") if raw else ():
            if item.startswith("signature="):
                signature = item[len("signature=") :]
            else:
                kept.append(item)
        parts.append("&".join(kept))
    return "".join(parts), signature
