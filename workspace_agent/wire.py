"""The drift report wire format: one module that the agent and the drift server both import, so
they can never disagree. Bounded everywhere (lengths, counts) because the server takes input from
every workspace. Never carries a secret: rule values of secret rules are `set`/`absent`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WIRE_VERSION = 1

# Routes (relative to the server's base URL).
ENROLL_PATH = "/api/v1/enroll"
REPORTS_PATH = "/api/v1/reports"
WORKSPACES_PATH = "/api/v1/workspaces"
CORRECTIONS_PATH = "/api/v1/corrections"  # `watch`: locked values put back between runs

MAX_RULES = 500
MAX_REPORT_BYTES = 512 * 1024
MAX_CORRECTIONS = 100  # per batch

RuleState = Literal["compliant", "drift", "corrected", "error"]
ReportKind = Literal["bootstrap", "check", "heartbeat"]
IdentityMode = Literal["enrollment-secret", "coder-agent-token"]

_Id = Field(min_length=1, max_length=200)
_Text = Field(default=None, max_length=4000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceIdentity(_Strict):
    id: str = _Id
    name: str = Field(default="", max_length=200)
    owner: str = Field(default="", max_length=200)


class RuleResultWire(_Strict):
    rule_id: str = _Id
    target: str = Field(max_length=1000)
    state: RuleState
    before: str | None = _Text
    after: str | None = _Text
    message: str | None = _Text


class Report(_Strict):
    """One run's result, sent on change and as a heartbeat. `report_id` makes a resend harmless."""

    wire_version: int = WIRE_VERSION
    report_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    kind: ReportKind
    workspace: WorkspaceIdentity
    agent_version: str = Field(max_length=50)
    desired_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    enforcement_level: str = Field(max_length=50)  # requested by the template / policy
    key_enforcement_level: str | None = Field(default=None, max_length=50)  # stored on the key, when known
    key_source: str = Field(default="none", max_length=30)
    identity_mode: IdentityMode = "enrollment-secret"
    exit_code: int = Field(ge=0, le=255)
    started_at: datetime
    finished_at: datetime
    rules: list[RuleResultWire] = Field(max_length=MAX_RULES)
    notes: list[str] = Field(default_factory=list, max_length=50)


class EnrollRequest(_Strict):
    workspace: WorkspaceIdentity
    agent_version: str = Field(max_length=50)


class EnrollResponse(_Strict):
    workspace_id: str
    workspace_token: str
    heartbeat_interval_s: int = 300
    identity_mode: IdentityMode = "enrollment-secret"


class ReportAccepted(_Strict):
    report_id: str
    duplicate: bool = False


class CorrectionWire(_Strict):
    """One locked value `watch` found changed and put back (or could not). The agent builds it
    with the standard library (corrections.py); a test checks it validates here."""

    correction_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    rule_id: str = _Id
    target: str = Field(max_length=1000)
    before: str | None = Field(default=None, max_length=1000)
    after: str | None = Field(default=None, max_length=1000)
    at: datetime
    restored: bool
    latency_ms: int = Field(ge=0, le=86_400_000)
    message: str | None = Field(default=None, max_length=1000)


class CorrectionBatch(_Strict):
    """Corrections sent together; each `correction_id` makes a resend harmless."""

    wire_version: int = WIRE_VERSION
    batch_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    workspace: WorkspaceIdentity
    agent_version: str = Field(max_length=50)
    corrections: list[CorrectionWire] = Field(min_length=1, max_length=MAX_CORRECTIONS)


class CorrectionsAccepted(_Strict):
    batch_id: str
    stored: int  # new corrections (a resent one is not stored twice)
