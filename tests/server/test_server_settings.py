"""Settings from DRIFT_* variables, and the combinations that cannot work refused up front."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from workspace_agent_server.settings import Settings


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_DB_URL", "sqlite:///env.db")
    monkeypatch.setenv("DRIFT_ADMIN_TOKENS", " first-token-Hg5Kd8Wq2 , second-token-Lp3Zx9Vb6 ")
    monkeypatch.setenv("DRIFT_HEARTBEAT_INTERVAL_S", "120")
    monkeypatch.setenv("DRIFT_STALE_AFTER_HEARTBEATS", "4")
    s = Settings()
    assert s.db_url == "sqlite:///env.db"
    assert [t.get_secret_value() for t in s.admin_tokens] == [
        "first-token-Hg5Kd8Wq2",
        "second-token-Lp3Zx9Vb6",
    ]
    assert s.stale_after_s == 480
    assert "first-token" not in repr(s)


def test_defaults_need_no_setup() -> None:
    s = Settings()
    assert s.db_url == "sqlite:///./drift.db" and s.enrollment_secret is None
    assert s.admin_tokens == [] and s.webhook_url is None


@pytest.mark.parametrize(
    "values, says",
    [
        ({"enrollment_secret": "short"}, "DRIFT_ENROLLMENT_SECRET is too short"),
        ({"admin_tokens": "ok-token-Rt5Yh8Jk2Mn,tiny"}, "DRIFT_ADMIN_TOKENS is too short"),
        ({"webhook_url": "http://127.0.0.1:9/x"}, "DRIFT_WEBHOOK_SECRET is not"),
        ({"webhook_url": "ftp://x", "webhook_secret": "s" * 20}, "must start with http"),
        (
            {"enrollment_secret": "same-secret-Xc4Vb7Nm1", "admin_tokens": "same-secret-Xc4Vb7Nm1"},
            "must differ",
        ),
        ({"heartbeat_interval_s": 1}, "greater than or equal to 5"),
    ],
)
def test_unworkable_settings_are_refused(values: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(**values)  # type: ignore[arg-type]


def test_settings_survive_the_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers N` hands the checked settings to the worker processes as DRIFT_* variables."""
    from workspace_agent_server.settings import Settings, to_environment

    given = Settings(
        db_url="sqlite:////tmp/x.db",
        enrollment_secret="enroll-secret-Km4Xy7Pq1Ns8Dv5",
        admin_tokens="admin-one-Xq9Wm2Lk5Rv8,admin-two-Pz4Ty7Bn1Cs3",
        heartbeat_interval_s=120,
        webhook_url="https://hooks.example/x",
        webhook_secret="hook-secret-Ab3Cd4Ef5Gh6",
        webhook_batch_window_s=2.5,
        cookie_secure=True,
    )
    for name, value in to_environment(given).items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.model_dump() == given.model_dump()
    assert [t.get_secret_value() for t in again.admin_tokens] == [
        "admin-one-Xq9Wm2Lk5Rv8",
        "admin-two-Pz4Ty7Bn1Cs3",
    ]
    assert again.webhook_secret is not None
    assert again.webhook_secret.get_secret_value() == "hook-secret-Ab3Cd4Ef5Gh6"


def test_spend_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from workspace_agent_server.settings import to_environment

    monkeypatch.setenv("DRIFT_LITELLM_URL", "http://litellm:4000")
    monkeypatch.setenv("DRIFT_LITELLM_MASTER_KEY", "sk-master-Hx7Qp2Lm9Vb4")
    monkeypatch.setenv("DRIFT_SPEND_BUDGET_THRESHOLDS", "50%, 90,100")
    monkeypatch.setenv("DRIFT_SPEND_TIERS", "cheap=haiku,mid=sonnet")
    s = Settings()
    assert s.spend_budget_thresholds == [50, 90, 100] and s.tiers == [("cheap", "haiku"), ("mid", "sonnet")]
    assert "sk-master" not in repr(s)
    assert Settings(**{}).spend_budget_thresholds == [50, 90, 100]  # from the environment again
    env = to_environment(s)
    assert env["DRIFT_SPEND_BUDGET_THRESHOLDS"] == "50,90,100" and env["DRIFT_LITELLM_MASTER_KEY"].startswith("sk-")
    monkeypatch.delenv("DRIFT_LITELLM_MASTER_KEY")
    for bad, says in [
        ({}, "go together"),
        ({"litellm_master_key": "x" * 20, "litellm_url": "litellm:4000"}, "must start with http"),
        ({"litellm_master_key": "x" * 20, "spend_budget_thresholds": "0"}, "between 1 and 1000"),
        ({"litellm_master_key": "x" * 20, "spend_tiers": "haiku"}, "is not tier=text"),
    ]:
        with pytest.raises(ValidationError, match=says):
            Settings(**bad)
