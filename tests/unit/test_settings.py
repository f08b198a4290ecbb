import subprocess
import sys

import pytest
from payments_shared.settings import CommonSettings, ConfigError, load


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
