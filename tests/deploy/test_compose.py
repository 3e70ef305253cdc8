"""docker-compose.yml without a Docker engine: the Compose specification's schema, every
command a real command of the image, every SEGSTREAM_* a real setting that parses, and
addresses, ports and files that agree with each other."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
import pytest

from tests.support import compose
from tests.support.deploy import (
    CONNECTOR,
    ENV_EXAMPLE,
    ROOT,
    build_settings,
    check_mlflow_argv,
    check_segstream_argv,
    expected_connector,
    load_yaml,
    promtool,
    run,
    tool,
    unknown_settings,
)

SERVICES = compose.services()
SEGSTREAM_SERVICES = sorted(n for n, s in SERVICES.items()
                            if compose.uses_segstream_image(s) and compose.argv(s)[:1]
                            == ["segstream"])
# What the issue asks for, service by service: the command each one runs.
COMMANDS = {
    "topics": "segstream stack up",
    "stream": "segstream stream",
    "train": "segstream train",
    "update": "segstream update",
    "api": "segstream serve",
    "detect": "segstream webhooks detect",
    "webhooks": "segstream webhooks run",
    "generate": "segstream generate",
}
ONE_SHOT = {"topics", "train", "generate"}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for x in node for s in _strings(x)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    return [str(node)]


@pytest.mark.parametrize("form", ["as written", "interpolated from .env.example"])
def test_the_file_passes_the_compose_specification_schema(form: str, tmp_path: Path) -> None:
    path = compose.COMPOSE
    if form != "as written":
        path = tmp_path / "docker-compose.json"
        path.write_text(json.dumps(compose.resolved().value))
    out = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path])
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_service_the_issue_names_runs_what_it_should() -> None:
    for name, path in COMMANDS.items():
        assert name in SERVICES, f"no {name} service"
        assert check_segstream_argv(compose.argv(SERVICES[name])) == path, name
    kafka = compose.environment(SERVICES["kafka"])
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller", "Kafka must run in KRaft mode"
    assert not any("zookeeper" in s.lower() for s in _strings(SERVICES))
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    stream = compose.argv(SERVICES["stream"])
    assert stream[stream.index("--source") + 1] == "kafka"
    assert SERVICES["generate"]["profiles"] == ["generator"]


def test_mlflow_serves_a_postgres_backend_and_an_artefact_volume() -> None:
    mlflow = SERVICES["mlflow"]
    argv = compose.argv(mlflow)
    assert check_mlflow_argv(argv) == "mlflow server"
    store = urlsplit(compose.environment(mlflow)["MLFLOW_BACKEND_STORE_URI"])
    db = compose.environment(SERVICES["mlflow-db"])
    assert store.scheme.startswith("postgresql")
    assert (store.hostname, store.username, store.password, store.path.lstrip("/")) == (
        "mlflow-db", db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"])
    destination = argv[argv.index("--artifacts-destination") + 1]
    assert "--serve-artifacts" in argv
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mlflow["volumes"]}
    assert any(destination.startswith(target) and source in compose.raw()["volumes"]
               for target, source in mounts.items()), f"{destination} is not on a volume"


def test_the_stream_fetches_the_kafka_connector_of_the_installed_spark() -> None:
    args = compose.environment(SERVICES["stream"])["PYSPARK_SUBMIT_ARGS"].split()
    assert args[-1] == "pyspark-shell", "PYSPARK_SUBMIT_ARGS must end with pyspark-shell"
    confs = dict(a.split("=", 1) for a in args if "=" in a)
    assert confs["spark.jars.packages"] == expected_connector()
    assert CONNECTOR.fullmatch(confs["spark.jars.packages"])


@pytest.mark.parametrize("name", SEGSTREAM_SERVICES)
def test_each_command_is_a_real_segstream_command(name: str) -> None:
    check_segstream_argv(compose.argv(SERVICES[name]))


def test_every_segstream_variable_is_a_setting() -> None:
    for name, service in SERVICES.items():
        assert not unknown_settings(compose.environment(service)), name
    assert not unknown_settings(compose.example_env())
    commented = dict(re.findall(r"^#\s*(SEGSTREAM_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(),
                                re.M))
    assert not unknown_settings(commented)


@pytest.mark.parametrize("name", SEGSTREAM_SERVICES)
def test_each_service_environment_builds_valid_settings(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**image_env(), **compose.environment(SERVICES[name]), "SEGSTREAM_ENV": "dev"}
    build_settings(monkeypatch, env)


def test_the_unedited_env_example_is_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**image_env(), **compose.environment(SERVICES["api"])}
    assert env["SEGSTREAM_ENV"] == "prod"
    with pytest.raises(pydantic.ValidationError, match="api_keys holds a placeholder"):
        build_settings(monkeypatch, env)


def test_the_placeholder_webhook_secret_is_refused_in_prod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**image_env(), **compose.environment(SERVICES["webhooks"]),
           "SEGSTREAM_WEBHOOK_URLS": '["https://cms.example.com/hook"]'}
    with pytest.raises(pydantic.ValidationError, match="webhook_secret"):
        build_settings(monkeypatch, env)


def image_env() -> dict[str, str]:
    """ENV of the Dockerfile's final stage (SEGSTREAM_DATA_DIR...)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


# --- addresses and ports -------------------------------------------------------------
ADDRESS = re.compile(r"(?<![A-Za-z0-9.@-])(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\s:]+(?::[^@/\s]*)?@)?"
                     r"(?P<host>[a-z][a-z0-9-]*):(?P<port>\d+)(?![0-9.])")


def _addresses(node: Any) -> list[tuple[str, int]]:
    return [(m["host"], int(m["port"])) for s in _strings(node) for m in ADDRESS.finditer(s)]


def test_every_address_of_a_service_is_a_port_it_listens_on() -> None:
    files = [load_yaml(ROOT / "deploy/compose/prometheus.yml"),
             load_yaml(ROOT / "deploy/compose/grafana/datasources.yml")]
    checked = 0
    for owner, node in [*SERVICES.items(), *(("config", f) for f in files)]:
        for host, port in _addresses(node):
            target = owner if host == "localhost" else host
            if target in SERVICES:
                checked += 1
                assert port in compose.exposed(SERVICES[target]), (
                    f"{owner} names {host}:{port}, but {target} listens on "
                    f"{sorted(compose.exposed(SERVICES[target]))}")
    assert checked >= 10


def test_clients_agree_with_their_servers() -> None:
    envs = [compose.environment(SERVICES[n]) for n in SEGSTREAM_SERVICES]
    for key in ("SEGSTREAM_KAFKA_BOOTSTRAP", "SEGSTREAM_REDIS_URL", "SEGSTREAM_REGISTRY_URI"):
        assert len({e[key] for e in envs}) == 1, f"{key} differs between services"
    env = envs[0]
    kafka = compose.environment(SERVICES["kafka"])
    advertised = dict(reversed(x.split("://")) for x in kafka["KAFKA_ADVERTISED_LISTENERS"]
                      .split(","))
    listener = advertised.get(env["SEGSTREAM_KAFKA_BOOTSTRAP"])
    assert listener == kafka["KAFKA_INTER_BROKER_LISTENER_NAME"], (
        f"{env['SEGSTREAM_KAFKA_BOOTSTRAP']} is not Kafka's internal advertised listener")
    port = env["SEGSTREAM_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    assert f"{listener}://:{port}" in kafka["KAFKA_LISTENERS"].split(",")

    redis = urlsplit(env["SEGSTREAM_REDIS_URL"])
    redis_argv = compose.argv(SERVICES["redis"])
    assert str(redis.port) == redis_argv[redis_argv.index("--port") + 1]

    registry = urlsplit(env["SEGSTREAM_REGISTRY_URI"])
    mlflow_argv = compose.argv(SERVICES["mlflow"])
    assert (registry.hostname, str(registry.port)) == (
        "mlflow", mlflow_argv[mlflow_argv.index("--port") + 1])
    allowed = mlflow_argv[mlflow_argv.index("--allowed-hosts") + 1].split(",")
    assert registry.netloc in allowed, "MLflow would refuse the clients' Host header"

    api = compose.environment(SERVICES["api"])
    assert api["SEGSTREAM_API_HOST"] == "0.0.0.0"
    api_port = int(api["SEGSTREAM_API_PORT"])
    health = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert f"localhost:{api_port}/healthz" in health
    targets = [t for job in load_yaml(ROOT / "deploy/compose/prometheus.yml")["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]]
    assert f"api:{api_port}" in targets

    prom_argv = compose.argv(SERVICES["prometheus"])
    listen = next(a.split("=")[1] for a in prom_argv if a.startswith("--web.listen-address"))
    datasource = load_yaml(ROOT / "deploy/compose/grafana/datasources.yml")["datasources"][0]
    assert urlsplit(datasource["url"]).port == int(listen.rsplit(":", 1)[1])


def test_the_generator_writes_to_the_topic_the_stream_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = compose.argv(SERVICES["generate"])
    settings = build_settings(monkeypatch, {**compose.environment(SERVICES["stream"]),
                                            "SEGSTREAM_ENV": "dev"})
    assert argv[argv.index("--topic") + 1] == settings.topic_events


# --- dependencies, restarts, health, volumes, variables --------------------------------
def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert "profiles" not in SERVICES[dep], f"{name} depends on profiled {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, dep, condition)
                assert dep in ONE_SHOT, f"{name} waits for {dep} to exit, but it runs on"


def test_restart_policies_and_health_checks() -> None:
    for name, service in SERVICES.items():
        restart = service.get("restart")
        if name in ONE_SHOT:
            assert restart in ("no", "on-failure"), (name, restart)
        else:
            assert restart == "unless-stopped", (name, restart)
        if compose.exposed(service):
            assert "healthcheck" in service, f"{name} listens but has no healthcheck"


def test_volumes_and_bind_mounts_exist() -> None:
    declared = set(compose.raw()["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    assert "stream-data" in used and any(
        v.startswith("stream-data:") and compose.environment(SERVICES["stream"])[
            "SEGSTREAM_STREAM_CHECKPOINT_DIR"].startswith(v.split(":")[1])
        for v in SERVICES["stream"]["volumes"]), "the checkpoint must be on a volume"


def test_variables_are_declared_in_env_example() -> None:
    used = compose.resolved().used  # raises for a required variable .env.example lacks
    text = ENV_EXAMPLE.read_text()
    listed = set(compose.example_env()) | set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    assert used == listed, (f"used, not in .env.example: {sorted(used - listed)}; "
                            f"in .env.example, unused: {sorted(listed - used)}")
    assert "changeme" in compose.example_env()["SEGSTREAM_API_KEYS"]


@pytest.mark.prometheus
def test_prometheus_and_grafana_provisioning_agree_with_the_mounts() -> None:
    config = ROOT / "deploy/compose/prometheus.yml"
    out = run([promtool(), "check", "config", "--syntax-only", config])
    assert out.returncode == 0, out.stdout + out.stderr
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0]
              for v in SERVICES["prometheus"]["volumes"] if v.startswith(".")}
    rules = load_yaml(config)["rule_files"]
    assert {mounts[r] for r in rules} == set((ROOT / "deploy/prometheus").glob("alerts*.yml"))

    grafana = {v.split(":")[1]: ROOT / v.split(":")[0]
               for v in SERVICES["grafana"]["volumes"] if v.startswith(".")}
    provider = load_yaml(ROOT / "deploy/compose/grafana/dashboards.yml")["providers"][0]
    assert grafana[provider["options"]["path"]] == ROOT / "deploy/grafana"
    assert any(t.startswith("/etc/grafana/provisioning/datasources/") for t in grafana)
    assert any(t.startswith("/etc/grafana/provisioning/dashboards/") for t in grafana)
    datasource = load_yaml(ROOT / "deploy/compose/grafana/datasources.yml")["datasources"][0]
    for path in (ROOT / "deploy/grafana").glob("*.json"):
        variables = json.loads(path.read_text())["templating"]["list"]
        kinds = {v["query"] for v in variables if v["type"] == "datasource"}
        assert kinds == {datasource["type"]}, path.name


def test_every_metrics_endpoint_is_scraped() -> None:
    jobs = load_yaml(ROOT / "deploy/compose/prometheus.yml")["scrape_configs"]
    targets = {t for job in jobs for sc in job["static_configs"] for t in sc["targets"]}
    want = {f"api:{compose.environment(SERVICES['api'])['SEGSTREAM_API_PORT']}"}
    for name in SEGSTREAM_SERVICES:
        argv = compose.argv(SERVICES[name])
        if "--metrics-port" in argv:
            port = argv[argv.index("--metrics-port") + 1]
            want.add(f"{name}:{port}")
            assert f"localhost:{port}/metrics" in " ".join(SERVICES[name]["healthcheck"]["test"])
            # 127.0.0.1 (the default) would be out of Prometheus's reach in another container
            assert compose.environment(SERVICES[name]).get("SEGSTREAM_METRICS_HOST") == (
                "0.0.0.0"), f"{name} binds its metrics to loopback"
    assert targets == want
