"""docker-compose.yml as the tests read it: YAML (anchors merged) with ``${VAR}``
interpolated the way Compose does it, from .env.example."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.support.deploy import COMPOSE, ENV_EXAMPLE, load_yaml, read_env_file

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@dataclass(frozen=True)
class Interpolated:
    value: Any
    used: frozenset[str]  # variable names referenced


def interpolate(node: Any, env: dict[str, str]) -> Interpolated:
    used: set[str] = set()

    def one(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, op, arg = m.group("name"), m.group("op"), m.group("arg")
            used.add(name)
            value = env.get(name)
            if op in (":-", ":?") and not value:
                value = None
            if value is not None:
                return value
            if op in (":-", "-"):
                return arg or ""
            raise AssertionError(f"${{{name}}} is required ({arg or 'no message'}) and "
                                 ".env.example does not set it")
        return VARIABLE.sub(sub, text.replace("$$", "\0")).replace("\0", "$")

    def walk(n: Any) -> Any:
        if isinstance(n, str):
            return one(n)
        if isinstance(n, list):
            return [walk(x) for x in n]
        if isinstance(n, dict):
            return {walk(k): walk(v) for k, v in n.items()}
        return n

    return Interpolated(walk(node), frozenset(used))


def raw() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def resolved() -> Interpolated:
    return interpolate(raw(), example_env())


def services() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = resolved().value["services"]
    return out


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def argv(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    assert isinstance(cmd, list), f"write commands as lists (exec form), got {cmd!r}"
    return [str(a) for a in cmd]


def exposed(service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: `expose` and `ports` targets."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        ports.add(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def uses_segstream_image(service: dict[str, Any]) -> bool:
    return service.get("build") == "."
