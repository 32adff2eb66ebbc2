"""Settings from the environment: the platform's variable names where they exist, new ones with
the `KEY_PROVISIONER_` prefix. A setting that cannot work is refused at start with a sentence
naming the variable, never later at the first request.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

IdentityPolicy = Literal["required", "legacy"]

MIN_SECRET_CHARS = 16
MIN_DERIVATION_CHARS = 32
SECRET_HINT = "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable and what to do."""


@dataclass(frozen=True)
class Settings:
    provisioner_secret: str = field(repr=False)  # the platform's shared bearer secret
    litellm_master_key: str = field(repr=False)
    derivation_secret: str = field(repr=False)  # turns (workspace, generation) into its key
    litellm_url: str = "http://litellm:4000"
    db_path: Path = Path("key-provisioner.db")
    # required: every key request must carry the workspace's Coder agent token;
    # legacy: requests without one are still served (the platform's behaviour), and logged.
    identity: IdentityPolicy = "required"
    coder_url: str | None = None
    coder_api_token: str | None = field(default=None, repr=False)
    workspace_budget: float = 10.0  # USD per budget window
    budget_duration: str = "1d"  # daily reset
    rpm_limit: int = 60
    tpm_limit: int = 100_000
    key_duration: str = "30d"
    rate_limit: int = 6  # key requests per workspace …
    rate_window_s: float = 60.0  # … per this many seconds
    identity_cache_s: float = 30.0
    coder_lookup_limit: int = 120  # identity checks sent to Coder per source address per window
    header_timeout_s: float = 10.0  # a request's headers must arrive within this (else closed)
    body_timeout_s: float = 30.0  # … and its body within this (else 408)
    forwarded_allow_ips: str | None = None  # proxies whose X-Forwarded-For is believed
    coder_timeout_s: float = 5.0
    litellm_timeout_s: float = 15.0
    # Key lifecycle (issue 18): who may approve a lower level or revoke a key, the secret of the
    # template's delete hook, and the reconcile loop over Coder.
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    revoke_secret: str | None = field(default=None, repr=False)
    reconcile_interval_s: float = 300.0  # 0: no loop
    reconcile_confirm_s: float = 2.0
    reconcile_max_fraction: float = 0.1
    reconcile_max_always: int = 3
    reconcile_batch: int = 10_000
    reconcile_concurrency: int = 8
    reconcile_limit: int = 100  # workspaces the loop may revoke …
    reconcile_limit_window_s: float = 86400.0  # … in any window this long (across passes)
    approval_ttl_s: float = 7 * 86400.0
    # The delete hook's and the admin API's rate limits (admin.py): per good credential, and
    # per source address for requests with none or a wrong one.
    lifecycle_rate_limit: int = 120
    lifecycle_rate_window_s: float = 60.0
    lifecycle_refused_limit: int = 20
    lifecycle_refused_window_s: float = 60.0

    @property
    def key_limits(self) -> dict[str, Any]:
        """The budget and limits every key gets, new or rotated (keys.generate_body's keywords)."""
        return {"budget": self.workspace_budget, "budget_duration": self.budget_duration,
                "rpm_limit": self.rpm_limit, "tpm_limit": self.tpm_limit, "duration": self.key_duration}

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line or an answer."""
        values = (
            self.provisioner_secret,
            self.litellm_master_key,
            self.derivation_secret,
            self.coder_api_token or "",
            self.revoke_secret or "",
            *self.admin_tokens,
        )
        return tuple(v for v in values if v)


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise SettingsError with one sentence on the first problem."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    def secret(name: str, minimum: int = MIN_SECRET_CHARS) -> str:
        value = get(name)
        if not value:
            raise SettingsError(f"{name} is not set: the key provisioner cannot run without it")
        if len(value) < minimum:
            raise SettingsError(
                f"{name} is too short: use at least {minimum} random characters {SECRET_HINT}"
            )
        return value

    def url(name: str, default: str | None) -> str | None:
        value = get(name) or default
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise SettingsError(f"{name}={value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    def number(name: str, default: float, low: float, high: float) -> float:
        return _number(env, name, default, low, high)

    identity = get("KEY_PROVISIONER_IDENTITY") or "required"
    if identity not in ("required", "legacy"):
        raise SettingsError(
            f"KEY_PROVISIONER_IDENTITY={identity!r} is not allowed: choose required (every request "
            "proves its workspace with its Coder agent token) or legacy (requests without one are "
            "served as the platform's provisioner did, and logged)"
        )
    coder_url = url("CODER_URL", None)
    coder_token = get("CODER_API_TOKEN") or None
    if identity == "required" and not (coder_url and coder_token):
        raise SettingsError(
            "KEY_PROVISIONER_IDENTITY=required needs CODER_URL (Coder's access URL) and "
            "CODER_API_TOKEN (a token that can read every workspace) to verify workspaces; set "
            "them, or set KEY_PROVISIONER_IDENTITY=legacy to serve unverified requests"
        )
    if coder_url and not coder_token:
        raise SettingsError(
            "CODER_URL is set but CODER_API_TOKEN is not: both are needed to ask Coder"
        )
    if coder_token and not coder_url:
        raise SettingsError(
            "CODER_API_TOKEN is set but CODER_URL is not: both are needed to ask Coder"
        )
    rate_raw = get("KEY_PROVISIONER_RATE_LIMIT") or "6/60"
    count, _, window = rate_raw.partition("/")
    if (
        not (count.isdigit() and window.replace(".", "", 1).isdigit())
        or int(count) < 1
        or float(window) <= 0
    ):
        raise SettingsError(
            f"KEY_PROVISIONER_RATE_LIMIT={rate_raw!r} must look like 6/60 (requests per workspace / seconds)"
        )
    budget = number("WORKSPACE_BUDGET", 10.0, 0.0, 1_000_000.0)
    admin_tokens = tuple(
        t.strip() for t in get("KEY_PROVISIONER_ADMIN_TOKENS").split(",") if t.strip()
    )
    for token in admin_tokens:
        if len(token) < MIN_SECRET_CHARS:
            raise SettingsError(
                f"KEY_PROVISIONER_ADMIN_TOKENS has a token shorter than {MIN_SECRET_CHARS} characters "
                f"{SECRET_HINT}"
            )
    revoke_secret = None
    if get("KEY_PROVISIONER_REVOKE_SECRET"):
        revoke_secret = secret("KEY_PROVISIONER_REVOKE_SECRET")
    interval = number("KEY_PROVISIONER_RECONCILE_INTERVAL_S", 300.0, 0.0, 7 * 86400.0)
    if 0 < interval < 1:
        raise SettingsError(
            f"KEY_PROVISIONER_RECONCILE_INTERVAL_S={interval:g} is too short: use 0 (off) or at least 1"
        )
    reconcile_limit, reconcile_window = per_window(
        env,
        "KEY_PROVISIONER_RECONCILE_LIMIT",
        "100/86400",
        "workspaces revoked by the reconcile loop",
        60.0,
        30 * 86400.0,
    )
    lifecycle_rate, lifecycle_window = per_window(
        env,
        "KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT",
        "120/60",
        "delete-hook and admin requests per credential",
        1.0,
        86400.0,
    )
    refused_limit, refused_window = per_window(
        env,
        "KEY_PROVISIONER_LIFECYCLE_REFUSED_LIMIT",
        "20/60",
        "refused delete-hook and admin requests per source address",
        1.0,
        86400.0,
    )
    settings = Settings(
        provisioner_secret=secret("PROVISIONER_SECRET"),
        litellm_master_key=secret("LITELLM_MASTER_KEY", 4),
        derivation_secret=secret("KEY_PROVISIONER_DERIVATION_SECRET", MIN_DERIVATION_CHARS),
        litellm_url=url("LITELLM_URL", "http://litellm:4000") or "",
        db_path=Path(get("KEY_PROVISIONER_DB") or "key-provisioner.db"),
        identity=identity,  # type: ignore[arg-type]
        coder_url=coder_url,
        coder_api_token=coder_token,
        workspace_budget=budget,
        rate_limit=int(count),
        rate_window_s=float(window),
        identity_cache_s=number("KEY_PROVISIONER_IDENTITY_CACHE_S", 30.0, 0.0, 3600.0),
        coder_lookup_limit=int(number("KEY_PROVISIONER_CODER_LOOKUP_LIMIT", 120, 1, 1_000_000)),
        header_timeout_s=number("KEY_PROVISIONER_HEADER_TIMEOUT_S", 10.0, 0.1, 600.0),
        body_timeout_s=number("KEY_PROVISIONER_BODY_TIMEOUT_S", 30.0, 0.1, 3600.0),
        forwarded_allow_ips=get("KEY_PROVISIONER_FORWARDED_ALLOW_IPS") or None,
        admin_tokens=admin_tokens,
        revoke_secret=revoke_secret,
        reconcile_interval_s=interval,
        reconcile_confirm_s=number("KEY_PROVISIONER_RECONCILE_CONFIRM_S", 2.0, 0.0, 600.0),
        reconcile_max_fraction=number("KEY_PROVISIONER_RECONCILE_MAX_FRACTION", 0.1, 0.0, 1.0),
        reconcile_max_always=int(number("KEY_PROVISIONER_RECONCILE_MAX_ALWAYS", 3, 0, 1_000_000)),
        reconcile_batch=int(number("KEY_PROVISIONER_RECONCILE_BATCH", 10_000, 1, 1_000_000)),
        reconcile_concurrency=int(number("KEY_PROVISIONER_RECONCILE_CONCURRENCY", 8, 1, 64)),
        reconcile_limit=reconcile_limit,
        reconcile_limit_window_s=reconcile_window,
        lifecycle_rate_limit=lifecycle_rate,
        lifecycle_rate_window_s=lifecycle_window,
        lifecycle_refused_limit=refused_limit,
        lifecycle_refused_window_s=refused_window,
        approval_ttl_s=approval_ttl(env),
    )
    if len(set(settings.secrets)) != len(settings.secrets):
        raise SettingsError(
            "PROVISIONER_SECRET, LITELLM_MASTER_KEY, KEY_PROVISIONER_DERIVATION_SECRET, "
            "CODER_API_TOKEN, KEY_PROVISIONER_REVOKE_SECRET and KEY_PROVISIONER_ADMIN_TOKENS must "
            "all differ: workspaces hold PROVISIONER_SECRET"
        )
    return settings


def approval_ttl(environ: Mapping[str, str] | None = None) -> float:
    """KEY_PROVISIONER_APPROVAL_TTL_S, checked (the `approve-level` command reads only this one:
    it must not record approvals the server would refuse to be configured with)."""
    env = os.environ if environ is None else environ
    return _number(env, "KEY_PROVISIONER_APPROVAL_TTL_S", 7 * 86400.0, 60.0, 90 * 86400.0)


def per_window(
    env: Mapping[str, str], name: str, default: str, what: str, low_s: float, high_s: float
) -> tuple[int, float]:
    """A limit written N/SECONDS (as KEY_PROVISIONER_RATE_LIMIT): at most N in any SECONDS."""
    raw = env.get(name, "").strip() or default
    count, _, window = raw.partition("/")
    try:
        n, seconds = int(count), float(window)
    except ValueError:
        n, seconds = 0, math.nan
    if not (1 <= n <= 1_000_000 and low_s <= seconds <= high_s):
        raise SettingsError(
            f"{name}={raw!r} must look like {default} ({what} / seconds, 1 to 1000000 per "
            f"{low_s:.0f} to {high_s:.0f} s)"
        )
    return n, seconds


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        raise SettingsError(f"{name}={raw!r} must be between {low:g} and {high:g}")
    return value
