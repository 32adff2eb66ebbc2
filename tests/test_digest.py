"""digest.sha256_hex gives hashlib's digest without loading OpenSSL."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from workspace_agent.digest import sha256_hex


@pytest.mark.parametrize("data", [b"", b"abc", "é prompt\n".encode(), bytes(range(256)) * 300])
def test_same_digest_as_hashlib(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_importing_it_does_not_load_hashlib() -> None:
    code = "import sys, workspace_agent.digest as d; d.sha256_hex(b'x'); print('hashlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
