"""key_provisioner.settings: every refusal is one sentence naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from key_provisioner.settings import Settings, SettingsError, from_env

GOOD = {
    "PROVISIONER_SECRET": "Prov-Secret-7f3a9c2e1b",
    "LITELLM_MASTER_KEY": "sk-master-Vb8Qz3nL5",
    "KEY_PROVISIONER_DERIVATION_SECRET": "derive-Lq2Vb7Rt9Wz3Ahx8Km4Xy7Pq1Ns8Dv5",
    "CODER_URL": "https://coder.example/",
    "CODER_API_TOKEN": "coder-api-token-Rk2mW9qT",
}


def test_defaults_follow_the_platform() -> None:
    settings = from_env(GOOD)
    assert settings.identity == "required" and settings.coder_url == "https://coder.example"
    assert (
        settings.litellm_url,
        settings.workspace_budget,
        settings.rpm_limit,
        settings.tpm_limit,
    ) == ("http://litellm:4000", 10.0, 60, 100_000)
    assert (settings.key_duration, settings.budget_duration) == ("30d", "1d")
    assert (settings.rate_limit, settings.rate_window_s) == (6, 60.0)
    assert settings.db_path == Path("key-provisioner.db")
    for secret in GOOD.values():
        if "coder.example" not in secret:
            assert secret not in repr(settings)


def test_legacy_mode_needs_no_coder() -> None:
    env = {k: v for k, v in GOOD.items() if not k.startswith("CODER_")} | {
        "KEY_PROVISIONER_IDENTITY": "legacy"
    }
    settings = from_env(env)
    assert settings.identity == "legacy" and settings.coder_url is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"PROVISIONER_SECRET": ""}, "PROVISIONER_SECRET is not set"),
        ({"PROVISIONER_SECRET": "short"}, "PROVISIONER_SECRET is too short"),
        (
            {"KEY_PROVISIONER_DERIVATION_SECRET": "x" * 20},
            "KEY_PROVISIONER_DERIVATION_SECRET is too short",
        ),
        ({"CODER_URL": ""}, "KEY_PROVISIONER_IDENTITY=required needs CODER_URL"),
        ({"CODER_URL": "coder.example"}, "CODER_URL='coder.example' is not an http"),
        ({"KEY_PROVISIONER_IDENTITY": "maybe"}, "KEY_PROVISIONER_IDENTITY='maybe' is not allowed"),
        (
            {"KEY_PROVISIONER_RATE_LIMIT": "lots"},
            "KEY_PROVISIONER_RATE_LIMIT='lots' must look like 6/60",
        ),
        ({"KEY_PROVISIONER_RATE_LIMIT": "0/60"}, "must look like 6/60"),
        ({"WORKSPACE_BUDGET": "ten"}, "WORKSPACE_BUDGET='ten' is not a number"),
        ({"WORKSPACE_BUDGET": "-1"}, "WORKSPACE_BUDGET='-1' must be between"),
        ({"LITELLM_URL": "litellm:4000"}, "LITELLM_URL='litellm:4000' is not an http"),
        ({"CODER_API_TOKEN": GOOD["PROVISIONER_SECRET"]}, "must all differ"),
    ],
)
def test_bad_settings_are_one_sentence(change: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env(GOOD | change)
    assert words in str(caught.value)
    for secret in GOOD.values():
        if len(secret) > 12 and "://" not in secret:
            assert secret not in str(caught.value)


def test_coder_url_and_token_go_together_in_legacy_mode_too() -> None:
    env = GOOD | {"KEY_PROVISIONER_IDENTITY": "legacy", "CODER_API_TOKEN": ""}
    with pytest.raises(SettingsError, match="CODER_URL is set but CODER_API_TOKEN is not"):
        from_env(env)


def test_settings_is_frozen() -> None:
    settings: Settings = from_env(GOOD)
    with pytest.raises(AttributeError):
        settings.identity = "legacy"  # type: ignore[misc]


def test_key_lifecycle_defaults_and_secrets() -> None:
    settings = from_env(GOOD)
    assert (settings.reconcile_interval_s, settings.reconcile_confirm_s) == (300.0, 2.0)
    assert (settings.reconcile_max_fraction, settings.reconcile_max_always) == (0.1, 3)
    assert (settings.admin_tokens, settings.revoke_secret) == ((), None)
    assert (settings.reconcile_limit, settings.reconcile_limit_window_s) == (100, 86400.0)
    assert (settings.lifecycle_rate_limit, settings.lifecycle_rate_window_s) == (120, 60.0)
    assert (settings.lifecycle_refused_limit, settings.lifecycle_refused_window_s) == (20, 60.0)
    custom = from_env(GOOD | {"KEY_PROVISIONER_ADMIN_TOKENS": " admin-token-Hq7Lw2Zp9Xc4, admin-two-Lw2Zp9Xc4Vb1 ",
                              "KEY_PROVISIONER_REVOKE_SECRET": "revoke-secret-Tt5Gm8Ks3J",
                              "KEY_PROVISIONER_RECONCILE_INTERVAL_S": "0"})
    assert custom.admin_tokens == ("admin-token-Hq7Lw2Zp9Xc4", "admin-two-Lw2Zp9Xc4Vb1")
    assert custom.reconcile_interval_s == 0
    for secret in (*custom.admin_tokens, "revoke-secret-Tt5Gm8Ks3J"):
        assert secret in custom.secrets and secret not in repr(custom)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"KEY_PROVISIONER_ADMIN_TOKENS": "short"}, "KEY_PROVISIONER_ADMIN_TOKENS has a token shorter than 16"),
        ({"KEY_PROVISIONER_REVOKE_SECRET": "short"}, "KEY_PROVISIONER_REVOKE_SECRET is too short"),
        ({"KEY_PROVISIONER_REVOKE_SECRET": "Prov-Secret-7f3a9c2e1b"}, "must all differ"),
        ({"KEY_PROVISIONER_RECONCILE_INTERVAL_S": "0.5"}, "KEY_PROVISIONER_RECONCILE_INTERVAL_S=0.5 is too short"),
        ({"KEY_PROVISIONER_RECONCILE_INTERVAL_S": "soon"}, "KEY_PROVISIONER_RECONCILE_INTERVAL_S='soon' is not a number"),
        ({"KEY_PROVISIONER_RECONCILE_MAX_FRACTION": "2"}, "KEY_PROVISIONER_RECONCILE_MAX_FRACTION='2' must be between 0 and 1"),
        ({"KEY_PROVISIONER_RECONCILE_CONCURRENCY": "0"}, "KEY_PROVISIONER_RECONCILE_CONCURRENCY='0' must be between 1 and 64"),
        ({"KEY_PROVISIONER_RECONCILE_LIMIT": "100"}, "KEY_PROVISIONER_RECONCILE_LIMIT='100' must look like 100/86400"),
        ({"KEY_PROVISIONER_RECONCILE_LIMIT": "0/86400"}, "KEY_PROVISIONER_RECONCILE_LIMIT='0/86400' must look like"),
        ({"KEY_PROVISIONER_RECONCILE_LIMIT": "5/nan"}, "KEY_PROVISIONER_RECONCILE_LIMIT='5/nan' must look like"),
        ({"KEY_PROVISIONER_RECONCILE_LIMIT": "5/10"}, "1 to 1000000 per 60 to 2592000 s"),
        ({"KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT": "many"}, "KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT='many' must look like 120/60"),
        ({"KEY_PROVISIONER_LIFECYCLE_REFUSED_LIMIT": "-1/60"}, "KEY_PROVISIONER_LIFECYCLE_REFUSED_LIMIT='-1/60' must look like 20/60"),
    ],
)
def test_key_lifecycle_settings_refused_with_a_sentence(change: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(".", r"\.")):
        from_env(GOOD | change)
