import subprocess
import sys

import pytest
from payments_shared.settings import CommonSettings, ConfigError, ProviderSettings, load


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("PORT", "BROKER_URL", "EVENTSTORE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    settings = load(CommonSettings)
    assert settings.port == 8000
    assert settings.broker_url == "memory://"
    assert settings.eventstore_uri == f"sqlite:///{tmp_path / 'events.db'}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BROKER_URL", "redis://x"), ("EVENTSTORE_URI", "postgres://db"), ("PORT", "eighty"), ("PORT", "70000")],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load(CommonSettings)
    assert str(raised.value).startswith(f"configuration error: {variable} ")
    assert "\n" not in str(raised.value)


def test_the_process_exits_with_one_line(tmp_path) -> None:
    program = "from payments_shared.settings import CommonSettings, load; load(CommonSettings)"
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={"BROKER_URL": "redis://x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "configuration error: BROKER_URL must be memory:// or amqp://user:pass@host:5672/vhost (amqps:// too)"
    ]


@pytest.mark.parametrize(
    ("environment", "missing"),
    [
        ({"PAYMENTS_DEFAULT_PROVIDER": "stripe"}, "STRIPE_API_KEY is not set"),
        ({"PAYMENTS_DEFAULT_PROVIDER": "authnet"}, "AUTHNET_API_LOGIN_ID and AUTHNET_TRANSACTION_KEY are not set"),
        (
            {"PAYMENTS_DEFAULT_PROVIDER": "authnet", "AUTHNET_API_LOGIN_ID": "login"},
            "AUTHNET_TRANSACTION_KEY is not set",
        ),
    ],
)
def test_a_default_provider_without_its_credentials_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], missing: str
) -> None:
    for name in ("STRIPE_API_KEY", "AUTHNET_API_LOGIN_ID", "AUTHNET_TRANSACTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load(ProviderSettings)
    provider = environment["PAYMENTS_DEFAULT_PROVIDER"]
    assert str(raised.value) == f"configuration error: PAYMENTS_DEFAULT_PROVIDER is {provider}, but {missing}"


def test_a_default_provider_with_its_credentials_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_DEFAULT_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_unit")
    assert load(ProviderSettings).payments_default_provider == "stripe"
