"""Settings read from the environment (names as in API.md). One class per process kind builds on these.

A wrong value stops start-up with one line naming the variable and the accepted forms (see `load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BROKER_FORMS = "memory:// or amqp://user:pass@host:5672/vhost (amqps:// too)"
EVENTSTORE_FORMS = "sqlite:///path/events.db, kurrentdb://host:2113?tls=false, esdb://host:2113 or memory://"
PROVIDER_NAMES = ("sandbox", "stripe", "authnet")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AUTHNET_SANDBOX_URL = "https://apitest.authorize.net/xml/v1/request.api"
ProviderName = Literal["sandbox", "stripe", "authnet"]


class ConfigError(SystemExit):
    """A wrong setting. Uncaught, it ends the process with status 1, its one line printed on stderr."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def __str__(self) -> str:
        return self.line


class CommonSettings(BaseSettings):
    """What every process reads."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path("./data")
    broker_url: str = "memory://"
    eventstore_uri: str = ""  # default: sqlite:///$DATA_DIR/events.db
    log_level: str = "INFO"
    # A …Requested without an outcome older than this is taken over by a new delivery (its first attempt died).
    in_flight_window_s: float = Field(default=30.0, gt=0)
    # The HTTP server's protection against clients that hold connections (payments_shared.http.serve).
    http_request_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    http_max_connections: int | None = Field(default=None, ge=1)  # default: the open-file limit less a reserve

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() in LOG_LEVELS:
            return value.upper()
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if value == "memory://" or value.startswith(("amqp://", "amqps://")):
            return value
        raise ValueError(f"must be {BROKER_FORMS}")

    @field_validator("eventstore_uri")
    @classmethod
    def _eventstore_scheme(cls, value: str) -> str:
        if value == "" or value == "memory://" or value.startswith(("sqlite:///", "kurrentdb://", "esdb://")):
            return value
        if value.startswith(("kurrentdb+discover://", "esdb+discover://")):
            return value
        raise ValueError(f"must be {EVENTSTORE_FORMS}")

    @model_validator(mode="after")
    def _default_eventstore(self) -> CommonSettings:
        if not self.eventstore_uri:
            self.eventstore_uri = f"sqlite:///{self.data_dir / 'events.db'}"
        return self


class RecoverySettings(BaseSettings):
    """The recovery sweep of a worker that calls providers (transactions, billing): what it finishes and how often."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Work left without an outcome, idle for longer than this, is driven to one by the sweep.
    recovery_min_age_s: float = Field(default=30.0, ge=0)
    # How often the recovery sweep runs (0: only at start-up).
    recovery_interval_s: float = Field(default=5.0, ge=0)


class ProviderSettings(BaseSettings):
    """Provider credentials and resilience knobs: read by the workers that call providers."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    payments_default_provider: ProviderName = "sandbox"
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    authnet_api_login_id: str | None = None
    authnet_transaction_key: str | None = None
    authnet_api_url: str = AUTHNET_SANDBOX_URL
    provider_timeout_s: float = Field(default=10.0, gt=0)
    provider_retry_attempts: int = Field(default=3, ge=1, le=10)
    provider_retry_base_s: float = Field(default=0.05, ge=0)
    provider_retry_cap_s: float = Field(default=1.0, ge=0)
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("authnet_api_url")
    @classmethod
    def _authnet_url(cls, value: str) -> str:
        if not value:  # set but empty (a compose or Secret placeholder): the default
            return AUTHNET_SANDBOX_URL
        return check_http_url(value, AUTHNET_SANDBOX_URL)

    @field_validator("stripe_api_base")
    @classmethod
    def _stripe_base(cls, value: str | None) -> str | None:
        return check_http_url(value, "http://localhost:8420 (an emulator)") if value else None

    def missing_credentials(self, provider: str) -> list[str]:
        """The variables `provider` needs and lacks (none: it is configured). The one place that says which
        credentials make a provider usable: the registry builds only configured ones, start-up checks the default."""
        needed = {
            "stripe": {"STRIPE_API_KEY": self.stripe_api_key},
            "authnet": {
                "AUTHNET_API_LOGIN_ID": self.authnet_api_login_id,
                "AUTHNET_TRANSACTION_KEY": self.authnet_transaction_key,
            },
        }.get(provider, {})
        return [name for name, value in needed.items() if not value]

    @model_validator(mode="after")
    def _default_provider_configured(self) -> ProviderSettings:
        """Every payment without a `provider` goes to the default one: without its credentials each would fail."""
        missing = self.missing_credentials(self.payments_default_provider)
        if missing:
            raise ValueError(
                f"PAYMENTS_DEFAULT_PROVIDER is {self.payments_default_provider}, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set"
            )
        return self


def check_rate_limit(value: str) -> str:
    try:
        limit = parse_rate_limit(value)
    except ValueError:
        raise ValueError("must be in the limits notation, e.g. 600/minute or 10/second") from None
    if limit.amount < 1:  # 0/minute would refuse every request with 429
        raise ValueError("must allow at least one request, e.g. 600/minute or 10/second")
    return value


def check_http_url(value: str, example: str) -> str:
    """A provider's endpoint: an http(s) URL with a host (a typo would fail every call, not start-up)."""
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"must be an http:// or https:// URL, e.g. {example}")
    return value


def check_rate_limit_storage(value: str) -> str:
    if value == "memory://" or value.startswith(("redis://", "rediss://")):
        return value
    raise ValueError("must be memory:// or redis://host:6379")


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Build settings from the environment, or raise ConfigError naming the first wrong variable."""
    try:
        return cls()
    except ValidationError as error:
        first = error.errors()[0]
        reason = str(first["msg"]).removeprefix("Value error, ")
        if not first["loc"]:  # a check across variables names them itself
            raise ConfigError(f"configuration error: {reason}") from None
        variable = f"{cls.model_config.get('env_prefix') or ''}{first['loc'][0]}".upper()  # SANDBOX_LATENCY_MS
        raise ConfigError(f"configuration error: {variable} {reason}") from None


# Used when PAYMENTS_JWT_SECRET is unset (embedded development only; the gateway warns loudly at start-up).
DEVELOPMENT_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"


class JwtSettings(BaseSettings):
    """Bearer-token settings, shared by the gateway (verifies) and payments-ops (mints development tokens)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    payments_jwt_secret: str = Field(default=DEVELOPMENT_JWT_SECRET, min_length=1)
    payments_jwt_issuer: str | None = None
    payments_jwt_audience: str | None = None

    @property
    def using_development_secret(self) -> bool:
        return self.payments_jwt_secret == DEVELOPMENT_JWT_SECRET


class RateLimitSettings(BaseSettings):
    """Rate limits (the `limits` notation) and where their counters live; read by every HTTP process."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    rate_limit_storage: str = "memory://"
    rate_limit_read: str = "600/minute"
    rate_limit_write: str = "120/minute"
    rate_limit_webhook: str = "1200/minute"

    @field_validator("rate_limit_read", "rate_limit_write", "rate_limit_webhook")
    @classmethod
    def _limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        return check_rate_limit_storage(value)
