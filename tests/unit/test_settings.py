import subprocess
import sys

import pytest
from payments_shared.providers.sandbox import SandboxSettings
from payments_shared.settings import (
    AUTHNET_SANDBOX_URL,
    CommonSettings,
    ConfigError,
    ProviderSettings,
    RateLimitSettings,
    load,
)
from pydantic_settings import BaseSettings


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
    [
        ("BROKER_URL", "redis://x"),
        ("EVENTSTORE_URI", "postgres://db"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "bogus"),  # was a traceback from logging at start-up
    ],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load(CommonSettings)
    assert str(raised.value).startswith(f"configuration error: {variable} ")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"), [("SANDBOX_FAILURE_RATE", "2"), ("SANDBOX_LATENCY_MS", "-1"), ("SANDBOX_FAULT_SEED", "x")]
)
def test_a_prefixed_variable_is_named_whole(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load(SandboxSettings)
    assert str(raised.value).startswith(f"configuration error: {variable} ")  # was FAILURE_RATE, …


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


@pytest.mark.parametrize(
    ("settings", "variable", "value"),
    [
        (ProviderSettings, "AUTHNET_API_URL", "notaurl"),
        (ProviderSettings, "AUTHNET_API_URL", "ftp://apitest.authorize.net/xml"),
        (ProviderSettings, "STRIPE_API_BASE", "localhost:12111"),
        (RateLimitSettings, "RATE_LIMIT_WRITE", "0/minute"),
        (RateLimitSettings, "RATE_LIMIT_READ", "fast"),
    ],
)
def test_a_value_that_would_fail_every_request_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load(settings)
    assert str(raised.value).startswith(f"configuration error: {variable} ")


def test_provider_endpoints_and_limits_that_work_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:8420")
    monkeypatch.setenv("AUTHNET_API_URL", "https://api2.authorize.net/xml/v1/request.api")
    monkeypatch.setenv("RATE_LIMIT_WRITE", "1/second")
    assert load(ProviderSettings).stripe_api_base == "http://127.0.0.1:8420"
    assert load(RateLimitSettings).rate_limit_write == "1/second"


def test_an_empty_provider_endpoint_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "")
    monkeypatch.setenv("AUTHNET_API_URL", "")
    settings = load(ProviderSettings)
    assert (settings.stripe_api_base, settings.authnet_api_url) == (None, AUTHNET_SANDBOX_URL)
