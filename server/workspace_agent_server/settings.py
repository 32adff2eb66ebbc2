"""Server settings: from `DRIFT_*` environment variables (or keyword arguments in tests).

Secrets (enrollment secret, admin tokens, webhook secret) are `SecretStr` so they never show in a
repr or a log line. A setting that cannot work is refused at start with a sentence, not later.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workspace_agent import wire

MIN_SECRET_CHARS = 16


class Settings(BaseSettings):
    """Everything the server needs; defaults give a working single-file server."""

    model_config = SettingsConfigDict(env_prefix="DRIFT_", extra="forbid")

    db_url: str = "sqlite:///./drift.db"
    enrollment_secret: SecretStr | None = None
    # Comma-separated in the environment: DRIFT_ADMIN_TOKENS=tok1,tok2
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    heartbeat_interval_s: int = Field(default=300, ge=5, le=86_400)
    stale_after_heartbeats: int = Field(default=3, ge=1, le=1000)
    max_body_bytes: int = Field(default=wire.MAX_REPORT_BYTES, ge=1024, le=64 * 1024 * 1024)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_queue_size: int = Field(default=1000, ge=1)  # unused since notices live in the database
    webhook_batch_window_s: float = Field(default=5.0, ge=0)
    webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff_s: float = Field(default=1.0, gt=0)  # first retry delay; doubles, capped
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # How often each process looks for notices it did not store itself (other replicas', retries
    # whose backoff ended, leases of a replica that died).
    webhook_poll_s: float = Field(default=5.0, gt=0, le=3600)
    # The database connection pool of each process (PostgreSQL): at most pool + overflow
    # connections; a request that waits db_pool_timeout_s for one gets 503 with Retry-After.
    # Sizing: replicas × workers × (pool + overflow) ≤ max_connections − reserve (README).
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_pool_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # How often each process records that it is alive (with its schema and counters).
    replica_heartbeat_s: float = Field(default=5.0, gt=0, le=60)
    maintenance_interval_s: float = Field(default=30.0, gt=0)  # stale scan + pruning
    report_retention_days: int = Field(default=30, ge=1)  # report ids kept for duplicate checks
    session_hours: float = Field(default=12, gt=0, le=24 * 30)  # admin sign-in lifetime
    cookie_secure: bool = False  # set when the server is only reached over HTTPS
    # Origins (scheme://host[:port]) the admin page is reached at; empty: the request's own Host,
    # http or https. A cookie-signed state change from any other Origin is refused (CSRF).
    admin_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # "off": no /docs, /redoc, /openapi.json; "admin": /docs and /openapi.json for admins only.
    api_docs: Literal["off", "admin"] = "off"
    # Bearer token Prometheus sends to /metrics (an admin token works too); none: admins only.
    metrics_token: SecretStr | None = None
    # Slow clients: a request's headers must arrive within header_timeout_s (else the connection
    # is closed), its body within body_timeout_s (else 408); an idle keep-alive connection is
    # closed after keep_alive_s.
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    keep_alive_s: int = Field(default=5, ge=1, le=600)
    # Behind a reverse proxy: the proxies' addresses (comma-separated, or *) whose
    # X-Forwarded-For / X-Forwarded-Proto are believed, so that limits see the client's address.
    forwarded_allow_ips: str | None = None
    # Rate limits, per rate_window_s: enrollments per source address (shared secret) or per
    # verified workspace, identity checks sent to Coder per source address (cache misses only),
    # failed sign-ins per source address.
    rate_window_s: float = Field(default=60.0, gt=0, le=86_400)
    enroll_rate_limit: int = Field(default=30, ge=1)
    coder_lookup_rate_limit: int = Field(default=120, ge=1)
    login_failure_limit: int = Field(default=10, ge=1)
    # Enrollment by the workspace's Coder agent token (docs/identity.md): the server asks Coder at
    # coder_url, with coder_api_token (a token that can read every workspace), who is enrolling.
    coder_url: str | None = None
    coder_api_token: SecretStr | None = None
    coder_identity_cache_s: float = Field(default=30.0, ge=0, le=3600)
    coder_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # true: the shared enrollment secret alone never enrolls (only verified workspaces report).
    require_agent_token: bool = False
    # "full": an fsync per commit (per batch of reports), so an acknowledged report also survives
    # a power cut; "normal" survives a crash of the server (see README, Performance).
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    # Spend (spend_pull.py): LiteLLM's URL and master key (held here, never by a workspace), how
    # often one replica pulls, and what one pull may cost: per request time, body size, pages.
    litellm_url: str | None = None
    litellm_master_key: SecretStr | None = None
    spend_pull_interval_s: float = Field(default=300.0, ge=5, le=86_400)
    spend_timeout_s: float = Field(default=30.0, gt=0, le=600)
    spend_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024, le=2**31)
    spend_max_pages: int = Field(default=2000, ge=1, le=100_000)  # of /key/list (100 keys each)
    spend_backfill_days: int = Field(default=31, ge=1, le=400)  # the first pull goes this far back
    # Budget use (percent of max_budget) that sends a webhook notice, once per key and window.
    spend_budget_thresholds: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [80, 100]
    )
    spend_inactive_days: int = Field(default=14, ge=1, le=400)  # the pages' default
    # Model tiers: `tier=text` pairs; a model group containing the text is of that tier (first
    # match; none: "other"). The seed's tiers by default (§11.2: haiku $, sonnet $$, opus $$$).
    spend_tiers: str = "haiku=haiku,sonnet=sonnet,opus=opus"

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("admin_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("spend_budget_thresholds", mode="before")
    @classmethod
    def _split_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("%") for part in value.split(",") if part.strip()]
        return value

    @field_validator("litellm_url", mode="before")
    @classmethod
    def _blank_litellm_url(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("coder_url", mode="before")
    @classmethod
    def _blank_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        for name, secret in [
            ("DRIFT_ENROLLMENT_SECRET", self.enrollment_secret),
            ("DRIFT_WEBHOOK_SECRET", self.webhook_secret),
            ("DRIFT_METRICS_TOKEN", self.metrics_token),
            *[("DRIFT_ADMIN_TOKENS", t) for t in self.admin_tokens],
        ]:
            if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"{name} is too short: use at least {MIN_SECRET_CHARS} random characters "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
        if self.webhook_url:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise ValueError("DRIFT_WEBHOOK_URL must start with http:// or https://")
            if self.webhook_secret is None:
                raise ValueError(
                    "DRIFT_WEBHOOK_URL is set but DRIFT_WEBHOOK_SECRET is not: the receiver "
                    "needs the secret to check the X-Drift-Signature of each notice"
                )
        for origin in self.admin_origins:
            scheme, _, host = origin.partition("://")
            if scheme not in ("http", "https") or not host or "/" in host:
                raise ValueError(
                    f"DRIFT_ADMIN_ORIGINS: {origin!r} is not an origin: write it as "
                    "https://drift.example.com (scheme, host and port only)"
                )
        if (self.coder_url is None) != (self.coder_api_token is None):
            raise ValueError(
                "DRIFT_CODER_URL and DRIFT_CODER_API_TOKEN go together: set both to enroll workspaces "
                "by their Coder agent token, or neither"
            )
        if self.coder_url is not None and not self.coder_url.startswith(("http://", "https://")):
            raise ValueError("DRIFT_CODER_URL must start with http:// or https://")
        if self.require_agent_token and self.coder_url is None:
            raise ValueError(
                "DRIFT_REQUIRE_AGENT_TOKEN needs DRIFT_CODER_URL and DRIFT_CODER_API_TOKEN: without "
                "them no workspace could enroll"
            )
        if (self.litellm_url is None) != (self.litellm_master_key is None):
            raise ValueError(
                "DRIFT_LITELLM_URL and DRIFT_LITELLM_MASTER_KEY go together: set both to pull "
                "spend from LiteLLM, or neither"
            )
        litellm_url = self.litellm_url
        if litellm_url is not None and not litellm_url.startswith(("http://", "https://")):
            raise ValueError("DRIFT_LITELLM_URL must start with http:// or https://")
        if any(not 1 <= t <= 1000 for t in self.spend_budget_thresholds):
            raise ValueError(
                "DRIFT_SPEND_BUDGET_THRESHOLDS are percentages of a key's max budget between 1 "
                "and 1000, e.g. 80,100"
            )
        tier_problem = tiers_problem(self.spend_tiers)
        if tier_problem:
            raise ValueError(f"DRIFT_SPEND_TIERS: {tier_problem}")
        if self.enrollment_secret is not None and any(
            t.get_secret_value() == self.enrollment_secret.get_secret_value()
            for t in self.admin_tokens
        ):
            raise ValueError("an admin token must differ from the enrollment secret")
        return self

    @property
    def tiers(self) -> list[tuple[str, str]]:
        """(tier, text) pairs in order: the first whose text is in a model group names its tier."""
        return parse_tiers(self.spend_tiers)

    @property
    def stale_after_s(self) -> int:
        """No report for this long → the workspace is shown stale."""
        return self.heartbeat_interval_s * self.stale_after_heartbeats


def parse_tiers(value: str) -> list[tuple[str, str]]:
    pairs = []
    for part in value.split(","):
        tier, _, text = part.partition("=")
        if tier.strip() and text.strip():
            pairs.append((tier.strip(), text.strip().lower()))
    return pairs


def tiers_problem(value: str) -> str | None:
    """Why `value` is not a list of tier=text pairs (None: it is)."""
    for part in (p for p in value.split(",") if p.strip()):
        tier, eq, text = part.partition("=")
        if not eq or not tier.strip() or not text.strip() or len(tier.strip()) > 50:
            return f"{part.strip()!r} is not tier=text (e.g. haiku=haiku,sonnet=sonnet,opus=opus)"
    return None


def to_environment(settings: Settings) -> dict[str, str]:
    """The `DRIFT_*` variables that give `settings` again: how uvicorn's worker processes, which
    build their app from the environment, get the settings checked (and the secrets read from
    files) by the command line."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(
                v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value
            )
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"DRIFT_{name.upper()}"] = str(value)
    return env
