from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from banditgate.service.cli import app
from banditgate.service.settings import PolicySettings, Settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDITGATE_CONFIG", raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///./banditgate.db"
    assert settings.kafka_bootstrap_servers is None and settings.api_key is None
    assert settings.policies["default"].exploration == "squarecb"


def test_environment_wins_over_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "banditgate.toml"
    config.write_text(
        'database_url = "sqlite:///from-file.db"\napi_key = "file-key-0123456789abc"\n'
        '[policies.retry]\nexploration = "softmax"\nexploration_params = { temperature = 0.1 }\nfloor = 0.05\n'
    )
    monkeypatch.setenv("BANDITGATE_CONFIG", str(config))
    monkeypatch.setenv("BANDITGATE_API_KEY", "env-key-0123456789abc")
    settings = Settings()
    assert settings.database_url == "sqlite:///from-file.db"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "env-key-0123456789abc"
    assert settings.policies["retry"].floor == 0.05 and settings.policies["retry"].exploration == "softmax"


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDITGATE_CONFIG", "/nonexistent/banditgate.toml")
    with pytest.raises(ValueError, match="no such file"):
        Settings()


@pytest.mark.parametrize(
    ("field", "value"),
    [("policy_refresh_seconds", 0), ("policies", {"bad name!": {}}), ("unknown_setting", 1)],
)
def test_bad_settings_are_refused(field: str, value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDITGATE_CONFIG", raising=False)
    with pytest.raises(ValidationError, match=field.split("_")[0]):
        Settings(**{field: value})


def test_a_policy_declares_its_context_keys_and_bad_declarations_fail_at_load() -> None:
    spec = PolicySettings(features={"bin": "hashed", "merchant_id": "excluded"}).spec()
    assert spec.features == {"bin": {"treatment": "hashed", "buckets": 64}, "merchant_id": "excluded"}
    assert PolicySettings().spec().features == {}
    with pytest.raises(ValidationError, match=r"features\['bin'\]: unknown treatment 'ordinal'"):
        Settings(policies={"retry": {"features": {"bin": "ordinal"}}})
    with pytest.raises(ValidationError, match="'features' field"):
        Settings(policies={"retry": {"oracle_params": {"features": {}}}})


def test_a_policy_rule_gets_its_own_defaults_and_bad_parameters_fail_at_load() -> None:
    assert PolicySettings().spec().exploration_params == {"gamma": 100.0}
    assert PolicySettings(exploration="epsilon_greedy").spec().exploration_params == {}
    with pytest.raises(ValidationError, match="bad parameters for exploration rule 'softmax'"):
        Settings(policies={"retry": {"exploration": "softmax", "exploration_params": {"gamma": 5}}})
    with pytest.raises(ValidationError, match="unknown exploration rule 'thompson'"):
        Settings(policies={"retry": {"exploration": "thompson"}})


def test_reward_kinds_are_declared_in_the_toml_file_and_the_gate_reads_binary_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "banditgate.toml"
    config.write_text('[reward_kinds]\nauthorisation = "binary"\nmargin_eur = [-50, 500]\n')
    monkeypatch.setenv("BANDITGATE_CONFIG", str(config))
    rules = Settings().reward_kind_rules()
    assert set(rules) == {"authorisation", "margin_eur"} and rules["authorisation"].binary
    assert (rules["margin_eur"].minimum, rules["margin_eur"].maximum, rules["margin_eur"].binary) == (-50, 500, False)
    monkeypatch.delenv("BANDITGATE_CONFIG")
    with pytest.raises(ValidationError, match=r"reward kind 'margin_eur': the range must be .* got \[5.0, 1.0\]"):
        Settings(reward_kinds={"authorisation": "binary", "margin_eur": (5, 1)})
    with pytest.raises(ValidationError, match=r"gate.reward_kind: 'margin_eur' must be a binary reward kind"):
        Settings(reward_kinds={"authorisation": "binary", "margin_eur": (0, 9)}, gate={"reward_kind": "margin_eur"})
    with pytest.raises(ValidationError, match=r"policies.default.gate.early_kind: 'chargeback'"):
        Settings(reward_kinds={"authorisation": "binary"}, policies={"default": {"gate": {"early_kind": "chargeback"}}})


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_api_key_means_no_key(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``BANDITGATE_API_KEY=`` closes the admin endpoints like an unset key (it used to accept an empty header)."""
    monkeypatch.delenv("BANDITGATE_CONFIG", raising=False)
    monkeypatch.setenv("BANDITGATE_API_KEY", value)
    assert Settings().api_key is None
    assert Settings(api_key=value).api_key is None


def test_a_short_api_key_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDITGATE_CONFIG", raising=False)
    with pytest.raises(ValidationError, match="has 15 characters; it needs at least 16"):
        Settings(api_key="a" * 15)
    assert Settings(api_key="a" * 16).api_key is not None
    monkeypatch.setenv("BANDITGATE_ALLOW_SHORT_API_KEY", "true")
    allowed = Settings(api_key="dev")
    assert allowed.api_key is not None and allowed.api_key.get_secret_value() == "dev"


def test_serve_refuses_to_start_with_a_short_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDITGATE_CONFIG", raising=False)
    env = {"BANDITGATE_API_KEY": "change-me", "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    result = CliRunner().invoke(app, ["serve", "--host", "256.0.0.1"], env=env)  # would not bind anyway
    assert result.exit_code == 64
    assert "BANDITGATE_API_KEY" in result.output and "at least 16" in result.output
    assert not (tmp_path / "ledger.db").exists()  # refused before anything started
