"""SHA-256 hex digests of small texts, without loading OpenSSL.

`import hashlib` loads libcrypto (~2.4 ms here, a fifth of Python's own start-up) and every
`check` hashes its prompts and desired state; CPython's built-in SHA-256 gives the same digest.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

_sha256: Callable[[bytes], Any]
try:
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]  # CPython ≥ 3.12
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]  # CPython 3.11
    except ImportError:  # another Python: the standard way
        from hashlib import sha256 as _sha256  # type: ignore[no-redef]


def sha256_hex(data: bytes) -> str:
    return str(_sha256(data).hexdigest())
