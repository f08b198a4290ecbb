import json
import logging

from payments_shared.logging import JsonFormatter, correlation_id, register_secret


def _format(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "t", **extra})
    line = JsonFormatter().format(record)
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_lines_are_json_with_the_correlation_id() -> None:
    token = correlation_id.set("corr-123")
    try:
        line = _format("hello", order="o1")
    finally:
        correlation_id.reset(token)
    assert line["message"] == "hello"
    assert line["correlation_id"] == "corr-123"
    assert line["order"] == "o1"
    assert line["level"] == "info"


def test_card_numbers_tokens_and_keys_are_removed() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    line = json.dumps(
        _format(
            "pan 4242 4242 4242 4242 key sk_test_abcDEF123 hook whsec_xyz token " + jwt,
            header="Bearer abc.def",
        )
    )
    for secret in ("4242 4242 4242 4242", "sk_test_abcDEF123", "whsec_xyz", jwt, "abc.def"):
        assert secret not in line


def test_registered_secrets_are_removed() -> None:
    register_secret("authnet-key-XYZ987")
    assert "authnet-key-XYZ987" not in json.dumps(_format("login with authnet-key-XYZ987"))


def test_uvicorns_coloured_copy_of_the_message_is_left_out() -> None:
    # uvicorn passes `color_message` (the message with ANSI escape codes) with its records: it reached the JSON line.
    line = _format("Started server process", color_message="Started server process [\x1b[36m1\x1b[0m]")
    assert "color_message" not in line
    assert line["message"] == "Started server process"
