"""data.toml: shipped TOML texts come from settings/compiled-toml.json, anything else is parsed."""

from __future__ import annotations

import hashlib
import json
import tomllib

import pytest

from workspace_agent import data


def test_every_shipped_toml_text_is_compiled_and_equal_to_what_tomllib_reads() -> None:
    compiled = json.loads((data.data_dir("settings") / data.COMPILED).read_text(encoding="utf-8"))
    texts = data.shipped_toml_texts()
    assert len(texts) >= 5  # settings/*.toml and the review workflows' front matter
    for text in texts:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert digest in compiled, "a shipped TOML file changed: run `python -m workspace_agent.data`"
        assert compiled[digest] == tomllib.loads(text)
        assert data.toml(text) == tomllib.loads(text)
    assert compiled == data.compile_toml()


def test_other_texts_are_parsed_and_bad_ones_refused() -> None:
    assert data.toml('a = 1\n[b]\nc = "d"\n') == {"a": 1, "b": {"c": "d"}}
    with pytest.raises(ValueError):
        data.toml("a = = 1")


def test_a_compiled_value_is_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "x = [1, 2]\n"
    monkeypatch.setattr(data, "_compiled", lambda: {hashlib.sha256(text.encode()).hexdigest(): {"x": [1, 2]}})
    first = data.toml(text)
    first["x"].append(3)
    assert data.toml(text) == {"x": [1, 2]}


def test_a_check_reads_no_toml_parser(home, keyed_env, cli) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    assert cli("bootstrap", "-q").code == 0
    program = ("import sys; from workspace_agent.entry import main; rc = main(['check', '-q']); "
               "print('tomllib' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
