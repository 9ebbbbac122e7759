"""The opaque cursor of a session listing's page: ``(created_at, id)`` of its last session.

``GET /v1/sessions`` and the ACP adapter's ``session/list`` (embedded) issue and
read the same cursors; neither needs the other's transport.
"""

from __future__ import annotations

import base64
import binascii

from sessions import Session, dumps

from ._errors import ApiError, bad_request
from ._json_input import decode_json


def encode_cursor(session: Session) -> str:
    raw = dumps([session.created_at, session.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The ``(created_at, id)`` an opaque page cursor stands for.

    Raises:
        ApiError: 400 ``bad_parameter`` for anything this server did not issue.
    """
    try:
        value = decode_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), "cursor")
    except (ValueError, binascii.Error, ApiError):
        raise bad_request("bad_parameter", "invalid cursor") from None
    match value:
        case [int() | float() as created_at, str() as session_id] if not isinstance(
            created_at, bool
        ):
            return float(created_at), session_id
        case _:
            raise bad_request("bad_parameter", "invalid cursor")
