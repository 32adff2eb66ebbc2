"""workspace-key-provisioner: a drop-in, identity-checking replacement for the platform's key
provisioner (same routes, bodies and status codes; docs/identity.md).

It is the only holder of the LiteLLM master key. Unlike the platform's, it hands a workspace its
key only when Coder confirms, from the workspace's own agent token, that the caller is that
workspace; it keeps a key's first enforcement level (and records attempts to change it),
rate-limits per workspace and never logs a key.
"""

from __future__ import annotations

__version__ = "0.1.0"
