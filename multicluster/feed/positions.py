"""The resourceVersion this API hands out: an opaque token holding a change log position per cluster.

A token says, for every cluster in its scope, the last change log entry (store/changelog.py) its holder has
seen. It is stable across daemon restarts because the log is durable. Encoding: "mc1." + base64url (no padding)
of the JSON list of [cluster, position] pairs, sorted by cluster. Clients treat it as opaque, as Kubernetes asks
them to; "0" and "" keep their Kubernetes meaning (any state / the current state) and never reach here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import msgspec

PREFIX = "mc1."
MAX_TOKEN = 64 * 1024  # a token longer than this was not made here (64 KiB holds thousands of clusters)

Positions = dict[str, int]

_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(list[tuple[str, int]])


class BadPosition(ValueError):
    """A resourceVersion this API did not issue."""


def encode(positions: Mapping[str, int]) -> str:
    pairs = sorted(positions.items())
    return PREFIX + base64.urlsafe_b64encode(_ENCODE.encode(pairs)).rstrip(b"=").decode("ascii")


def decode(token: str) -> Positions:
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
        raise BadPosition(token[:80])
    body = token[len(PREFIX):]
    try:
        pairs = _DECODE.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise BadPosition(token[:80]) from exc
    out = dict(pairs)
    if len(out) != len(pairs) or any(seq < 0 for seq in out.values()):
        raise BadPosition(token[:80])
    return out
