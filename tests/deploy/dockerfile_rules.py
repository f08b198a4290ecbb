"""A small Dockerfile parser and the house rules for the service images, as pure functions returning problems."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from tests.deploy.k8s_rules import is_secret_name

# The base image: the official slim Python 3.11, pinned to a patch release (optionally by digest too).
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")
SECRET_VALUE = re.compile(r"sk_(live|test)_|whsec_|://[^/@\s:]+:[^/@\s]+@")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


def parse(text: str) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comments dropped (parser directives too)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    instructions = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def exec_form(arguments: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for the shell form."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(item, str) for item in value) else None


def env_pairs(arguments: str) -> list[tuple[str, str]]:
    """ENV/ARG `k=v k2="v 2"` or the legacy `ENV k v` form."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [(word.partition("=")[0], word.partition("=")[2]) for word in words]


def base_problems(instructions: list[Instruction]) -> list[str]:
    stage_names = set()
    problems = []
    for instruction in instructions:
        if instruction.keyword != "FROM":
            continue
        words = instruction.arguments.split()
        image = next(word for word in words if not word.startswith("--"))
        if image not in stage_names and not PINNED_BASE.match(image):
            problems.append(f"base image {image} is not python:3.11.N-slim pinned by version")
        if len(words) >= 3 and words[-2].upper() == "AS":
            stage_names.add(words[-1])
    return problems


def user_problems(instructions: list[Instruction]) -> list[str]:
    users = [instruction.arguments for instruction in final_stage(instructions) if instruction.keyword == "USER"]
    if not users:
        return ["the final stage sets no USER: the container would run as root"]
    user = users[-1].partition(":")[0]
    if not user.isdigit():
        return [f"USER {users[-1]} is not numeric (Kubernetes' runAsNonRoot needs a numeric UID)"]
    if int(user) == 0:
        return ["USER is root"]
    return []


def secret_problems(instructions: list[Instruction]) -> list[str]:
    problems = []
    for instruction in instructions:
        if instruction.keyword not in ("ENV", "ARG"):
            continue
        for name, value in env_pairs(instruction.arguments):
            if is_secret_name(name.upper()) or SECRET_VALUE.search(value):
                problems.append(f"{instruction.keyword} {name} bakes a secret into the image")
    return problems


def healthcheck_problems(instructions: list[Instruction]) -> list[str]:
    stage = final_stage(instructions)
    checks = [instruction.arguments for instruction in stage if instruction.keyword == "HEALTHCHECK"]
    if not checks:
        return ["no HEALTHCHECK"]
    command = exec_form(checks[-1].partition("CMD")[2].strip())
    if command is None:
        return ["HEALTHCHECK CMD is not in exec form"]
    if command[0] != "python" or "/healthz" not in " ".join(command):
        return ["HEALTHCHECK does not ask /healthz with python (slim images have no curl)"]
    return []


def command_problems(instructions: list[Instruction], package: str, port: int) -> list[str]:
    stage = final_stage(instructions)
    problems = []
    commands = [exec_form(instruction.arguments) for instruction in stage if instruction.keyword == "CMD"]
    if not commands or commands[-1] != ["python", "-m", package]:
        problems.append(f'CMD is not the exec form ["python", "-m", "{package}"]')
    exposed = [instruction.arguments for instruction in stage if instruction.keyword == "EXPOSE"]
    if exposed != [str(port)]:
        problems.append(f"EXPOSE is {exposed}, not [{port}]")
    ports = [value for i in stage if i.keyword == "ENV" for name, value in env_pairs(i.arguments) if name == "PORT"]
    if ports != [str(port)]:
        problems.append(f"ENV PORT is {ports}, not {port}")
    return problems


def install_problems(instructions: list[Instruction], service: str) -> list[str]:
    """Only shared/ and this service are copied in and installed: non-editable, without a pip cache."""
    allowed = {"shared", f"services/{service}"}
    problems = []
    installs = 0
    for instruction in instructions:
        words = shlex.split(instruction.arguments)
        if instruction.keyword == "COPY" and not any(word.startswith("--from") for word in words):
            sources = [word.rstrip("/").removeprefix("./") for word in words[:-1] if not word.startswith("--")]
            strays = [source for source in sources if source not in allowed]
            problems += [f"COPY {source} is not shared/ or services/{service}/" for source in strays]
        if instruction.keyword == "RUN" and "pip install" in instruction.arguments:
            installs += 1
            arguments = instruction.arguments.partition("pip install")[2].split("&&")[0].split()
            if "--no-cache-dir" not in arguments:
                problems.append("pip install without --no-cache-dir")
            if "-e" in arguments or "--editable" in arguments:
                problems.append("pip install is editable")
            targets = {word.rstrip("/").removeprefix("./") for word in arguments if not word.startswith("-")}
            if targets != allowed:
                problems.append(f"pip installs {sorted(targets)}, not exactly {sorted(allowed)}")
    if installs != 1:
        problems.append(f"{installs} pip install steps, expected 1")
    return problems


def all_problems(text: str, service: str, package: str, port: int) -> list[str]:
    instructions = parse(text)
    return [
        *base_problems(instructions),
        *user_problems(instructions),
        *secret_problems(instructions),
        *healthcheck_problems(instructions),
        *command_problems(instructions, package, port),
        *install_problems(instructions, service),
    ]
