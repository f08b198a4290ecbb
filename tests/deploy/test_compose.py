"""docker-compose.yml: valid against the Compose specification's JSON schema, and wired as API.md says.

The schema is the official compose-spec.json (github.com/compose-spec/compose-spec, schema/compose-spec.json)
as vendored by the `check-jsonschema` package; it is read from that package, offline. No Docker engine runs
here: the stack is checked as text, not started.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.dockerfile_rules import parse
from tests.deploy.k8s_rules import CREDENTIAL_URLS, image_problems, is_secret_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = {"gateway": 8000, "webhook-ingest": 8001, "transactions": 8080, "billing": 8080}
# Every variable API.md lists, plus the common settings every process reads (payments_shared.settings).
KNOWN_VARIABLES = {
    "PORT", "DATA_DIR", "BROKER_URL", "EVENTSTORE_URI", "LOG_LEVEL", "IN_FLIGHT_WINDOW_S",
    "PAYMENTS_JWT_SECRET", "PAYMENTS_JWT_ISSUER", "PAYMENTS_JWT_AUDIENCE", "PAYMENTS_DEFAULT_PROVIDER",
    "STRIPE_API_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET",
    "AUTHNET_API_LOGIN_ID", "AUTHNET_TRANSACTION_KEY", "AUTHNET_API_URL", "AUTHNET_SIGNATURE_KEY",
    "RATE_LIMIT_STORAGE", "RATE_LIMIT_READ", "RATE_LIMIT_WRITE", "RATE_LIMIT_WEBHOOK", "RPC_TIMEOUT_S",
}  # fmt: skip
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?[-?+])?(?P<default>[^}]*)\}")
DEV_RABBITMQ_CREDENTIALS = "guest:guest@"


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema: dict[str, Any] = json.loads(vendored.read_text())
    return schema


def environment(service: str) -> dict[str, Any]:
    value = SERVICES[service].get("environment", {})
    if isinstance(value, list):
        return {item.partition("=")[0]: (item.partition("=")[2] if "=" in item else None) for item in value}
    return dict(value)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema.Draft202012Validator(compose_schema()).validate(COMPOSE)


def test_the_schema_check_rejects_an_unknown_service_field() -> None:
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["gateway"]["depend_on"] = ["rabbitmq"]
    with pytest.raises(jsonschema.ValidationError, match="depend_on"):
        jsonschema.Draft202012Validator(compose_schema()).validate(broken)


def test_the_whole_stack_is_there() -> None:
    assert {"rabbitmq", "kurrentdb", *APP_SERVICES} <= set(SERVICES)
    assert "15672:15672" in SERVICES["rabbitmq"]["ports"], "RabbitMQ's management UI"
    assert "management" in SERVICES["rabbitmq"]["image"]
    assert SERVICES["gateway"]["ports"] == ["8000:8000"]
    assert SERVICES["webhook-ingest"]["ports"] == ["8001:8001"]


@pytest.mark.parametrize("service", SERVICES)
def test_images_are_pinned(service: str) -> None:
    assert image_problems(SERVICES[service]["image"]) == []


def test_kurrentdb_is_a_single_insecure_dev_node_with_a_data_volume() -> None:
    kurrentdb = SERVICES["kurrentdb"]
    assert kurrentdb["image"].startswith("docker.kurrent.io/kurrent-latest/kurrentdb:")
    assert kurrentdb["environment"]["KURRENTDB_CLUSTER_SIZE"] == "1"
    assert kurrentdb["environment"]["KURRENTDB_INSECURE"] == "true"
    volume = next(v for v in kurrentdb["volumes"] if v.endswith(":/var/lib/kurrentdb"))
    assert volume.partition(":")[0] in COMPOSE["volumes"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_service_is_built_from_its_own_dockerfile(service: str) -> None:
    build = SERVICES[service]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == f"services/{service}/Dockerfile"
    assert (ROOT / build["dockerfile"]).is_file()


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_service_environment_is_wired_per_the_api(service: str) -> None:
    env = environment(service)
    assert env["BROKER_URL"] == "amqp://guest:guest@rabbitmq:5672/"
    assert env["EVENTSTORE_URI"] == "kurrentdb://kurrentdb:2113?tls=false"
    assert env["PORT"] == str(APP_SERVICES[service])
    unknown = set(env) - KNOWN_VARIABLES
    assert not unknown, f"{service} sets variables no process reads: {unknown}"


def test_each_credential_goes_only_where_it_is_used() -> None:
    assert "PAYMENTS_JWT_SECRET" in environment("gateway")
    assert {"STRIPE_WEBHOOK_SECRET", "AUTHNET_SIGNATURE_KEY"} <= set(environment("webhook-ingest"))
    for worker in ("transactions", "billing"):
        assert {"STRIPE_API_KEY", "AUTHNET_API_LOGIN_ID", "AUTHNET_TRANSACTION_KEY"} <= set(environment(worker))
    assert "STRIPE_API_KEY" not in environment("gateway")
    assert "STRIPE_API_KEY" not in environment("webhook-ingest")


def secret_problems(service: str, env: dict[str, Any]) -> list[str]:
    """A credential is passed through by name (no value), or interpolated with at most a dev default."""
    problems = []
    for name, value in env.items():
        if value is None:
            continue
        text = str(value)
        if is_secret_name(name):
            found = INTERPOLATION.fullmatch(text)
            if found is None or found["name"] != name:
                problems.append(f"{service}: {name} has a literal value")
            elif found["default"] and "dev" not in found["default"]:
                problems.append(f"{service}: {name}'s default does not say it is a development value")
        elif name in CREDENTIAL_URLS and "@" in text and DEV_RABBITMQ_CREDENTIALS not in text:
            problems.append(f"{service}: {name} carries credentials other than RabbitMQ's dev guest")
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_no_secret_is_written_in_the_compose_file(service: str) -> None:
    assert secret_problems(service, environment(service)) == []


def test_the_secret_check_catches_a_literal_key() -> None:
    env = {**environment("billing"), "STRIPE_API_KEY": "sk_live_123"}
    env["PAYMENTS_JWT_SECRET"] = "${PAYMENTS_JWT_SECRET:-x}"
    env["EVENTSTORE_URI"] = "kurrentdb://admin:changeit@kurrentdb:2113"
    assert secret_problems("billing", env) == [
        "billing: EVENTSTORE_URI carries credentials other than RabbitMQ's dev guest",
        "billing: STRIPE_API_KEY has a literal value",
        "billing: PAYMENTS_JWT_SECRET's default does not say it is a development value",
    ]


def test_every_named_volume_is_declared() -> None:
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.partition(":")[0]
            assert source.startswith((".", "/")) or source in COMPOSE["volumes"], source


def test_the_workers_share_one_data_dir_as_in_make_services() -> None:
    mounts = [set(SERVICES[worker]["volumes"]) for worker in ("transactions", "billing")]
    assert "payments-data:/var/lib/payments" in mounts[0] & mounts[1]


def test_it_starts_without_any_variable_set() -> None:
    """No `${VAR:?}` (required) interpolation: `docker compose up` works on a fresh clone."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert not [found[0] for found in INTERPOLATION.finditer(text) if found["op"] in (":?", "?")]


def has_healthcheck(service: str) -> bool:
    definition = SERVICES[service]
    if "healthcheck" in definition:
        return not definition["healthcheck"].get("disable", False)
    if "build" in definition:
        instructions = parse((ROOT / definition["build"]["dockerfile"]).read_text())
        return any(instruction.keyword == "HEALTHCHECK" for instruction in instructions)
    return False


@pytest.mark.parametrize("service", SERVICES)
def test_start_order_is_health_gated(service: str) -> None:
    depends_on = SERVICES[service].get("depends_on", {})
    assert isinstance(depends_on, dict), f"{service}: depends_on must be the long form with a condition"
    for dependency, rule in depends_on.items():
        assert dependency in SERVICES
        assert rule["condition"] == "service_healthy", f"{service} -> {dependency}"
        assert has_healthcheck(dependency), f"{dependency} has no healthcheck to wait for"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_wait_for_the_broker_and_the_event_store(service: str) -> None:
    assert {"rabbitmq", "kurrentdb"} <= set(SERVICES[service]["depends_on"])


def test_redis_rate_limits_are_a_profile() -> None:
    assert SERVICES["redis"]["profiles"] == ["redis"]
    for service in ("gateway", "webhook-ingest"):
        assert SERVICES[service]["depends_on"]["redis"]["required"] is False
        assert environment(service)["RATE_LIMIT_STORAGE"] == "${RATE_LIMIT_STORAGE:-memory://}"
    assert all("profiles" not in SERVICES[name] for name in ("rabbitmq", "kurrentdb", *APP_SERVICES))
