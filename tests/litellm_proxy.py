"""Run a real LiteLLM proxy (the cached 1.108.7 venv) on a loopback port, for tests.

`start_proxy(venv, workdir, upstream_url)` writes, into `workdir`:
  config.yaml        mock models (mock_response), one model forwarded to `upstream_url`, no
                     database, custom auth, and the callbacks: this project's enforcement hook
                     (`workspace_agent.litellm_hook.enforcement.handler`, imported from the
                     repository) followed by a recorder
  workspace_auth.py  custom_auth giving each workspace key of `KEYS` its models, budget and
                     metadata; the "exhausted" key gets LiteLLM's BudgetExceededError
  recorder.py        a CustomLogger writing, per call id, the messages the model call received
                     (success log) and the request as it left the hooks (pre-call, after ours)
and starts `litellm --config ... --host 127.0.0.1 --port N` with LITELLM_LOCAL_MODEL_COST_MAP
and no DATABASE_URL, waiting for /health/liveliness. `Proxy.records(call_id)` reads what the
recorder wrote for one request.

The project reaches the proxy as docs/litellm-hook.md says an admin installs it: a wheel built
from the repository, installed with `pip install --no-deps` (here into a `--target` directory on
the proxy's PYTHONPATH, so the cached venv stays untouched).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO

MASTER_KEY = "sk-master-test-000000000000"
WORKSPACE_MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "upstream-echo"]


@dataclass(frozen=True)
class KeySpec:
    key: str
    alias: str
    level: str | None  # None: no enforcement_level in the metadata
    models: tuple[str, ...] = tuple(WORKSPACE_MODELS)
    expired: bool = False
    exhausted: bool = False


KEYS = {
    "standard": KeySpec("sk-ws-standard-Tq81Lm2Xc9Vb", "workspace-ws-std", "standard"),
    "design-first": KeySpec("sk-ws-design-Hk4Pz7Qw2Rn5", "workspace-ws-dsg", "design-first"),
    "unrestricted": KeySpec("sk-ws-unrestr-Ye6Ua3Ji8Ko1", "workspace-ws-unr", "unrestricted"),
    "unknown": KeySpec("sk-ws-unknown-Bv5Nc2Mx7Lz4", "workspace-ws-unk", "paranoid"),
    "missing": KeySpec("sk-ws-nolevel-Wq3Er8Ty1Ui6", "workspace-ws-nol", None),
    "haiku-only": KeySpec("sk-ws-haiku-Pl0Ok9Ij8Uh7", "workspace-ws-hai", "standard", ("claude-haiku-4-5",)),
    "expired": KeySpec("sk-ws-expired-Gf6Dc5Xs4Za3", "workspace-ws-exp", "standard", expired=True),
    "exhausted": KeySpec("sk-ws-exhaust-Mn2Bv3Cx4Zl5", "workspace-ws-exh", "standard", exhausted=True),
}

_AUTH = '''"""custom_auth for the test proxy: workspace keys with models, budget and metadata."""
from datetime import datetime, timedelta, timezone

import litellm
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

MASTER_KEY = {master!r}
KEYS = {keys!r}


async def authenticate(request, api_key):
    if api_key is None or api_key == "":
        raise Exception("No api key passed in.")
    if api_key == MASTER_KEY:
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    spec = KEYS.get(api_key)
    if spec is None:
        raise Exception("Invalid proxy server token passed.")
    if spec["exhausted"]:
        raise litellm.BudgetExceededError(current_cost=12.5, max_budget=10.0)
    expires = datetime.now(timezone.utc) + timedelta(days=-1 if spec["expired"] else 30)
    metadata = {{"workspace_id": spec["alias"].removeprefix("workspace-")}}
    if spec["level"] is not None:
        metadata["enforcement_level"] = spec["level"]
    return UserAPIKeyAuth(
        api_key=api_key,
        user_id="alice",
        key_alias=spec["alias"],
        models=list(spec["models"]),
        max_budget=10.0,
        spend=2.5,
        expires=expires,
        metadata=metadata,
    )
'''

_RECORDER = '''"""Records, per LiteLLM call id, what the model call received and the request after the hooks."""
import json
import os

from litellm.integrations.custom_logger import CustomLogger

RECORDS = os.environ["WA_TEST_RECORDS"]


def _write(entry):
    with open(RECORDS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\\n")


from workspace_agent.litellm_hook.policy import default_prompts_dir  # noqa: E402

_write({{"kind": "loaded", "call_id": None, "prompts_dir": str(default_prompts_dir())}})


class Recorder(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        _write({{
            "kind": "after_hooks",
            "call_id": data.get("litellm_call_id"),
            "call_type": str(getattr(call_type, "value", call_type)),
            "messages": data.get("messages"),
            "system": data.get("system"),
            "instructions": data.get("instructions"),
        }})
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        _write({{
            "kind": "model_call",
            "call_id": kwargs.get("litellm_call_id"),
            "model": kwargs.get("model"),
            "messages": kwargs.get("messages"),
        }})


recorder = Recorder()
'''


def _config(upstream_url: str) -> str:
    mock = '{model: openai/gpt-4o-mini, mock_response: "ok", api_key: fake}'
    return f"""model_list:
  - model_name: claude-sonnet-4-5
    litellm_params: {mock}
  - model_name: claude-haiku-4-5
    litellm_params: {mock}
  - model_name: claude-opus-4
    litellm_params: {mock}
  - model_name: upstream-echo
    litellm_params: {{model: openai/echo, api_base: "{upstream_url}/v1", api_key: fake}}
general_settings:
  master_key: {MASTER_KEY}
  custom_auth: workspace_auth.authenticate
  custom_auth_run_common_checks: true
litellm_settings:
  enable_post_custom_auth_checks: true
  callbacks: ["workspace_agent.litellm_hook.enforcement.handler", "recorder.recorder"]
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    records_path: Path
    site: Path  # where the project's wheel is installed for the proxy
    startup_s: float = 0.0

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self, call_id: str | None, kind: str, wait: float = 15.0) -> dict[str, Any]:
        """The recorder's entry of `kind` for one call (success logs are written after the answer)."""
        deadline = time.monotonic() + wait
        while True:
            if self.records_path.exists():
                for line in self.records_path.read_text(encoding="utf-8").splitlines():
                    entry = json.loads(line)
                    if entry.get("call_id") == call_id and entry.get("kind") == kind:
                        return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} record for call {call_id} within {wait} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def install_project(workdir: Path) -> Path:
    """Build this repository's wheel and `pip install --no-deps --target` it; the target dir."""
    dist, target = workdir / "dist", workdir / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("workspace_agent-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return target


def start_proxy(venv: str, workdir: Path, upstream_url: str, ready_within: float = 180.0) -> Proxy:
    """Install the project, write the config beside its modules, start the proxy; raise with its
    log if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    site = install_project(workdir)
    keys = {
        spec.key: {"alias": spec.alias, "level": spec.level, "models": list(spec.models),
                   "expired": spec.expired, "exhausted": spec.exhausted}
        for spec in KEYS.values()
    }
    (workdir / "workspace_auth.py").write_text(_AUTH.format(master=MASTER_KEY, keys=keys))
    (workdir / "recorder.py").write_text(_RECORDER.format())
    config = workdir / "config.yaml"
    config.write_text(_config(upstream_url))
    records = workdir / "records.jsonl"
    log_path = workdir / "proxy.log"
    port = free_port()
    env = {
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join([str(site), str(workdir)]),
        "WA_TEST_RECORDS": str(records),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [f"{venv}/bin/litellm", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = Proxy(f"http://127.0.0.1:{port}", process, log_path, records, site)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode} before it was ready:\n{proxy.log()[-4000:]}")
        try:
            if httpx.get(proxy.url + "/health/liveliness", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > ready_within:
            proxy.stop()
            raise RuntimeError(f"litellm was not ready within {ready_within:g} s:\n{proxy.log()[-4000:]}")
        time.sleep(0.25)
    proxy.startup_s = time.monotonic() - started
    return proxy
