"""Bearer-token authentication: tokens map to principals; sessions belong to principals.

Tokens are compared with :func:`hmac.compare_digest` against *every* configured
token, so neither the position of a match nor a prefix leaks through timing. Tokens
never appear in logs or reprs.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping

from attrs import evolve

from ._config import ServeConfig
from ._errors import ConfigurationError

LOCAL_PRINCIPAL = "local"


class Authenticator:
    """Resolves bearer tokens to principals."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise ConfigurationError("at least one token is required")
        self._tokens = [(token.encode(), principal) for token, principal in tokens.items()]

    def __repr__(self) -> str:
        return f"Authenticator({len(self._tokens)} tokens)"

    def principal(self, token: str | None) -> str | None:
        """The principal owning *token*, or ``None``."""
        if not token:
            return None
        candidate = token.encode()
        found: str | None = None
        for known, principal in self._tokens:
            # No early exit: the time taken must not depend on which token matched.
            if hmac.compare_digest(known, candidate):
                found = principal
        return found


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, if any."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_loopback(host: str) -> bool:
    """Whether *host* binds only the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ensure_tokens(config: ServeConfig) -> tuple[ServeConfig, str | None]:
    """*config* with at least one token, and the token generated for it, if any.

    Without configured tokens a loopback server gets a fresh random token for
    principal ``local`` (printed at start-up, as Jupyter does).

    Raises:
        ConfigurationError: no tokens and a non-loopback bind address.
    """
    if config.tokens:
        return config, None
    if not is_loopback(config.host):
        raise ConfigurationError(
            f"refusing to listen on {config.host} without authentication: configure tokens "
            "with AGENT_RUNTIME_TOKENS=token:principal or [auth] tokens in the config file"
        )
    token = secrets.token_urlsafe(24)
    return evolve(config, tokens={token: LOCAL_PRINCIPAL}), token
