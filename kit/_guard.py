"""Request checks shared by kit's small HTTP servers (the daemon's status server, the simulator).

* :class:`HostCheck`: answer only requests whose ``Host`` names this server. A web page open in
  the operator's browser can point a name it controls at 127.0.0.1 (DNS rebinding) and then read
  a loopback server as if it were its own origin; the browser still sends that name as ``Host``,
  so refusing unknown names closes the hole.
* :func:`bearer_ok`: a ``Authorization: Bearer <token>`` header checked in constant time.
* :func:`is_loopback`: whether a peer address is this machine.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(header: str | None) -> str | None:
    """The host part of a ``Host`` header (lowercase, no port, no brackets), or None if malformed."""
    if not header:
        return None
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        if end < 0 or (h[end + 1 :] and not h[end + 1 :].startswith(":")):
            return None
        name, port = h[1:end], h[end + 2 :]
    else:
        name, _, port = h.partition(":")
    if port and not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


@dataclass(frozen=True)
class HostCheck:
    """The names a server answers to: loopback, the address it is bound to, and ``names``.

    ``allows(header, local_addr)`` also accepts the address the client actually connected to
    (what a client bound to a wildcard address reaches by IP): a rebinding page's requests
    carry its own domain name, never that literal.
    """

    allowed: frozenset[str]

    @classmethod
    def for_server(cls, bind_host: str, names: Iterable[str] = ()) -> HostCheck:
        allowed = set(LOOPBACK_NAMES)
        if bind_host not in _WILDCARDS:
            allowed.add(bind_host.strip("[]").lower())
        for n in names:
            parsed = host_name(n)
            if parsed:
                allowed.add(parsed)
        return cls(frozenset(allowed))

    def allows(self, header: str | None, local_addr: str | None = None) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.allowed:
            return True
        return local_addr is not None and name == _unmap(local_addr)


def _unmap(addr: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4``; other addresses as they are (lowercase)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr.lower()
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def is_loopback(addr: str | None) -> bool:
    """Whether ``addr`` (a peer's IP address) is this machine's loopback."""
    if not addr:
        return False
    try:
        return ipaddress.ip_address(_unmap(addr)).is_loopback
    except ValueError:
        return False


def bearer_ok(header: str | None, token: str) -> bool:
    """``header`` is ``Bearer <token>`` (compared in constant time; an empty ``token`` never matches)."""
    if not token or not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
