"""Ask Coder which workspace a workspace agent token belongs to (docs/identity.md).

Used by the hardened key provisioner and the drift server: both take a workspace's claim ("I am
workspace X", from the request body) plus its agent token, and accept the claim only when Coder
vouches for it.
"""

from __future__ import annotations

from coder_identity.verify import (
    AGENT_TOKEN_HEADER,
    IDENTITY_LOG_SOURCE_ID,
    CoderIdentity,
    CoderUnavailable,
    IdentityRefused,
    TooManyLookups,
    VerifiedWorkspace,
)

__all__ = [
    "AGENT_TOKEN_HEADER",
    "IDENTITY_LOG_SOURCE_ID",
    "CoderIdentity",
    "CoderUnavailable",
    "IdentityRefused",
    "TooManyLookups",
    "VerifiedWorkspace",
]
