"""docs/deploy.md is true to the files: its commands are real commands of segstream,
docker compose services and k8s objects, its paths exist, its settings exist."""

from __future__ import annotations

import itertools
import re
import shlex

from tests.support import compose
from tests.support.deploy import ROOT, check_segstream_argv, objects, render, setting_names

DOC = (ROOT / "docs" / "deploy.md").read_text()
SERVICES = compose.services()


def shell_lines() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC, re.S)
    lines = [ln.split(" #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines if ln]


def inline_code() -> list[str]:
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", DOC, flags=re.S))


def strip_env(argv: list[str]) -> list[str]:
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        argv = argv[1:]
    return argv


def test_every_segstream_command_parses() -> None:
    commands = [strip_env(a) for a in shell_lines()]
    commands += [strip_env(shlex.split(c)) for c in inline_code()]
    checked = 0
    for argv in commands:
        if argv[:1] == ["segstream"] and len(argv) > 1 and not any(
                "..." in a or "|" in a for a in argv):
            check_segstream_argv(argv)
            checked += 1
    assert checked >= 8


def test_compose_commands_name_real_services_and_profiles() -> None:
    profiles = {p for s in SERVICES.values() for p in s.get("profiles", [])}
    seen = 0
    for argv in shell_lines():
        if argv[:2] != ["docker", "compose"]:
            continue
        seen += 1
        for flag, value in itertools.pairwise(argv):
            if flag == "--profile":
                assert value in profiles, value
        if "run" in argv:
            assert argv[-1] in SERVICES, argv
    assert seen >= 2
    table = re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", DOC, re.M)
    assert {name for name, _ in table} == set(SERVICES), "the services table"
    for name, cell in table:
        command = cell.strip("`")
        if cell.startswith("`segstream") and "..." not in command:
            assert command == " ".join(compose.argv(SERVICES[name])), name


def test_kubectl_commands_name_real_overlays_jobs_and_secrets() -> None:
    namespaces = {"dev": "segstream-dev", "prod": "segstream"}
    kubectl = [a for a in shell_lines() if a[:1] == ["kubectl"]]
    kubectl += [shlex.split(c) for c in inline_code() if c.startswith("kubectl ")]
    seen = set()
    for argv in kubectl:
        if "-k" in argv:
            path = ROOT / argv[argv.index("-k") + 1]
            assert (path / "kustomization.yaml").is_file(), path
            seen.add("apply")
        if "-n" in argv and argv[argv.index("-n") + 1] in namespaces.values():
            overlay = next(o for o, n in namespaces.items() if n == argv[argv.index("-n") + 1])
            for arg in argv:
                if arg.startswith("--from=cronjob/"):
                    assert arg.split("/", 1)[1] in objects(overlay, "CronJob"), arg
                    seen.add("job")
            if argv[1:5] == ["-n", namespaces[overlay], "create", "secret"]:
                name = argv[6]
                keys = {a.split("=")[1] for a in argv if a.startswith("--from-literal=")}
                refs = {r["secretRef"]["name"] for o in render(overlay)
                        if o["kind"] == "Deployment"
                        for c in o["spec"]["template"]["spec"]["containers"]
                        for r in c.get("envFrom", []) if "secretRef" in r}
                assert refs == {name}
                base = objects("dev", "Secret")[name]["stringData"]
                assert keys == set(base), f"the doc's secret keys {keys} != {set(base)}"
                seen.add("secret")
    assert seen == {"apply", "job", "secret"}


def test_paths_and_settings_named_exist() -> None:
    top = {"docker-compose.yml", "Dockerfile", ".env.example"}
    for code in inline_code():
        token = code.split()[0]
        if token in top or re.match(r"^(deploy|k8s|tests|docs|scripts)/[\w./-]*$", token):
            path = ROOT / token.split("#")[0].rstrip("/")
            assert path.exists() or any(ROOT.glob(token)), f"docs name missing {token}"
        for name in re.findall(r"\bSEGSTREAM_[A-Z0-9_]+", code):
            assert name in setting_names(), f"docs name unknown setting {name}"
