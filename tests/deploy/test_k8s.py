"""k8s/ rendered by a real kustomize (kubectl from the dev extra) and validated offline:
built-in kinds by kubernetes-validate (strict: unknown fields fail), the custom
resources by the subset schemas in tests/deploy/schemas/; then what must agree across
objects (selectors, ports, names, probes, commands, settings)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv

from tests.support.deploy import (
    K8S,
    build_settings,
    check_segstream_argv,
    expected_connector,
    objects,
    render,
    unknown_settings,
)

OVERLAYS = ["dev", "prod"]
# The oldest Kubernetes minor we claim, and the newest that kubernetes-validate knows.
K8S_VERSIONS = ["1.30", kv.latest_version()]
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM = {("sparkoperator.k8s.io/v1beta2", "SparkApplication"): "sparkapplication-v1beta2.yaml",
          ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.yaml"}
UID = 10001  # the Dockerfile's USER


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = objects(overlay, kind)
    assert name in found, f"{overlay}: no {kind} {name}; have {sorted(found)}"
    return found[name]


def pod_specs(overlay: str) -> dict[str, dict[str, Any]]:
    """Pod templates of the Deployments and CronJobs, by workload name."""
    out = {n: d["spec"]["template"]["spec"] for n, d in objects(overlay, "Deployment").items()}
    for name, cron in objects(overlay, "CronJob").items():
        out[name] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


def spark(overlay: str) -> dict[str, Any]:
    return one(overlay, "SparkApplication", "segstream-stream")["spec"]


@functools.cache
def custom_validator(filename: str) -> jsonschema.protocols.Validator:
    from kubernetes_validate.utils import schema_contents

    defs = schema_contents(f"kubernetes-json-schema/v{K8S_VERSIONS[0]}.0-local-strict/"
                           "_definitions.json", K8S_VERSIONS[0])
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        defs["$id"], referencing.Resource.from_contents(defs))
    schema = yaml.safe_load((SCHEMAS / filename).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)


# --- render and validate ------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_offline(overlay: str, version: str) -> None:
    errors = []
    for obj in render(overlay):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        custom = CUSTOM.get((obj["apiVersion"], obj["kind"]))
        if custom:
            errors += [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                       for e in custom_validator(custom).iter_errors(obj)]
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            errors.append(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{name}: no schema ({e.message}); add one to tests/deploy/schemas")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("kind", sorted(k for _, k in CUSTOM))
def test_the_custom_schemas_refuse_an_unknown_field(kind: str) -> None:
    obj = next(o for o in render("prod") if o["kind"] == kind)
    bad = yaml.safe_load(yaml.safe_dump(obj))
    bad["spec"]["endpoints" if kind == "ServiceMonitor" else "executor"] = (
        [{"port": "http", "intervall": "15s"}] if kind == "ServiceMonitor"
        else {**bad["spec"]["executor"], "instance": 3})
    validator = custom_validator(CUSTOM[(obj["apiVersion"], kind)])
    assert not list(validator.iter_errors(obj))
    assert list(validator.iter_errors(bad)), "a misspelt field passed"


def test_the_overlays_differ_where_they_should() -> None:
    assert {o["metadata"]["namespace"] for o in render("dev") if o["kind"] != "Namespace"} == {
        "segstream-dev"}
    assert {o["metadata"]["namespace"] for o in render("prod") if o["kind"] != "Namespace"} == {
        "segstream"}
    hpa = {o: one(o, "HorizontalPodAutoscaler", "segstream-api")["spec"] for o in OVERLAYS}
    assert hpa["dev"]["minReplicas"] < hpa["prod"]["minReplicas"] <= hpa["prod"]["maxReplicas"]
    assert spark("dev")["executor"]["instances"] < spark("prod")["executor"]["instances"]
    prod_image = spark("prod")["image"]
    assert prod_image.startswith("registry.example.com/segstream:")
    for overlay in OVERLAYS:
        images = {c["image"] for p in pod_specs(overlay).values() for c in p["containers"]}
        assert images == {spark(overlay)["image"]}, f"{overlay}: one image for all: {images}"


# --- the API --------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_is_probed_resourced_exposed_scaled_and_protected(overlay: str) -> None:
    deploy = one(overlay, "Deployment", "segstream-api")
    pod = deploy["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    settings = config_map(overlay)
    port = next(p for p in container["ports"] if p["name"] == "http")
    assert port["containerPort"] == int(settings["SEGSTREAM_API_PORT"])
    assert settings["SEGSTREAM_API_HOST"] == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", port["containerPort"])

    labels = pod["metadata"]["labels"]
    service = one(overlay, "Service", "segstream-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    hpa = one(overlay, "HorizontalPodAutoscaler", "segstream-api")["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == (
        "Deployment", "segstream-api")
    assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
    pdb = one(overlay, "PodDisruptionBudget", "segstream-api")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()

    monitor = one(overlay, "ServiceMonitor", "segstream")["spec"]
    assert selects(monitor["selector"], service["metadata"]["labels"])
    assert {"port": "http", "path": "/metrics"}.items() <= monitor["endpoints"][0].items()

    policy = one(overlay, "NetworkPolicy", "segstream-api-ingress")["spec"]
    assert selects(policy["podSelector"], labels)
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {
        port["containerPort"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_denied_by_default_and_spark_pods_reach_each_other(overlay: str) -> None:
    deny = one(overlay, "NetworkPolicy", "segstream-default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    spark_policy = one(overlay, "NetworkPolicy", "segstream-stream-internal")["spec"]
    for role in ("driver", "executor"):
        assert selects(spark_policy["podSelector"], spark(overlay)[role]["labels"])
    (rule,) = spark_policy["ingress"]
    assert rule["from"] == [{"podSelector": spark_policy["podSelector"]}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_metrics_ports_are_served_scraped_and_allowed(overlay: str) -> None:
    monitor = one(overlay, "ServiceMonitor", "segstream")["spec"]
    policy = one(overlay, "NetworkPolicy", "segstream-metrics-ingress")["spec"]
    for name in ("segstream-detector", "segstream-dispatcher"):
        pod = one(overlay, "Deployment", name)["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        port = int(container["args"][container["args"].index("--metrics-port") + 1])
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
        service = one(overlay, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
        assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [
            ("metrics", "metrics")]
        assert selects(monitor["selector"], service["metadata"]["labels"]), name
        assert "metrics" in {e["port"] for e in monitor["endpoints"]}
        assert selects(policy["podSelector"], pod["metadata"]["labels"]), name
    assert [p["port"] for r in policy["ingress"] for p in r["ports"]] == ["metrics"]
    assert config_map(overlay)["SEGSTREAM_METRICS_HOST"] == "0.0.0.0", (
        "the default 127.0.0.1 is out of Prometheus's reach")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_streaming_driver_serves_its_metrics_to_the_service_monitor(overlay: str) -> None:
    spec = spark(overlay)
    port = int(spec["arguments"][spec["arguments"].index("--metrics-port") + 1])
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in spec["driver"][
        "ports"]
    service = one(overlay, "Service", "segstream-stream")
    # Spark labels its driver pod spark-role=driver and its executors spark-role=executor
    driver = {**spec["driver"]["labels"], "spark-role": "driver"}
    executor = {**spec["executor"]["labels"], "spark-role": "executor"}
    assert selects({"matchLabels": service["spec"]["selector"]}, driver)
    assert not selects({"matchLabels": service["spec"]["selector"]}, executor)
    assert [(p["name"], p["targetPort"], p["port"]) for p in service["spec"]["ports"]] == [
        ("metrics", "metrics", port)]
    monitor = one(overlay, "ServiceMonitor", "segstream")["spec"]
    assert selects(monitor["selector"], service["metadata"]["labels"])
    policy = one(overlay, "NetworkPolicy", "segstream-metrics-ingress")["spec"]
    assert selects(policy["podSelector"], driver)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        value = labels.get(e["key"])
        ok = {"In": value in e.get("values", []), "NotIn": value not in e.get("values", []),
              "Exists": value is not None, "DoesNotExist": value is None}[e["operator"]]
        if not ok:
            return False
    return True


# --- the streaming job ---------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_spark_application_runs_the_stream_with_its_data_on_a_shared_claim(
        overlay: str) -> None:
    spec = spark(overlay)
    assert spec["mainApplicationFile"] == "local:///opt/segstream/main.py"
    assert "main()" in dockerfile_main_py(), "the image's main.py must run the segstream CLI"
    assert check_segstream_argv(["segstream", *spec["arguments"]]) == "segstream stream"
    args = spec["arguments"]
    assert args[args.index("--source") + 1] == "kafka"
    assert spec["deps"]["packages"] == [expected_connector()]
    assert spec["sparkVersion"] == expected_connector().rsplit(":", 1)[1]
    assert spec["restartPolicy"]["type"] == "Always"
    assert spec["sparkConf"]["spark.dynamicAllocation.enabled"] == "false"

    (volume,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    claim = one(overlay, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], (
        "executors write state-store files: every pod of the job mounts the checkpoint")
    env = {e["name"]: e["value"] for e in spec["driver"]["env"]}
    checkpoint = env["SEGSTREAM_STREAM_CHECKPOINT_DIR"]
    assert env["SEGSTREAM_SPARK_MASTER"].startswith("k8s://")
    for role in ("driver", "executor"):
        mounts = [m["mountPath"] for m in spec[role]["volumeMounts"]
                  if m["name"] == volume["name"]]
        assert any(checkpoint.startswith(m + "/") for m in mounts), f"{role}: {mounts}"
        if role == "driver":  # the Parquet history goes under the data directory
            assert config_map(overlay)["SEGSTREAM_DATA_DIR"] in mounts

    account = spec["driver"]["serviceAccount"]
    assert account in objects(overlay, "ServiceAccount")
    binding = one(overlay, "RoleBinding", "segstream-spark-driver")
    assert {"kind": "ServiceAccount", "name": account,
            "namespace": binding["metadata"]["namespace"]} in binding["subjects"]
    rules = one(overlay, "Role", binding["roleRef"]["name"])["rules"]
    assert any("pods" in r["resources"] and "create" in r["verbs"] for r in rules)


def dockerfile_main_py() -> str:
    text = (K8S.parent / "Dockerfile").read_text()
    (line,) = [ln for ln in text.splitlines() if "/opt/segstream/main.py" in ln
               and ln.startswith("RUN")]
    return line


# --- other workloads, commands, settings, security ----------------------------------
def test_trainer_detector_and_dispatcher_run_their_commands() -> None:
    want = {"segstream-trainer": "segstream update",
            "segstream-detector": "segstream webhooks detect",
            "segstream-dispatcher": "segstream webhooks run",
            "segstream-topics": "segstream stack up",
            "segstream-train": "segstream train"}
    for overlay in OVERLAYS:
        got = {n: check_segstream_argv(c["args"]) for n, p in pod_specs(overlay).items()
               for c in p["containers"]}
        assert got == {**want, "segstream-api": "segstream serve"}, overlay
        for name in ("segstream-trainer", "segstream-detector", "segstream-dispatcher"):
            spec = one(overlay, "Deployment", name)["spec"]
            assert (spec["replicas"], spec["strategy"]["type"]) == (1, "Recreate"), name
        for cron in objects(overlay, "CronJob").values():
            assert cron["spec"]["suspend"] is True, "one-off jobs must not run on a schedule"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_the_image_user_with_resources(overlay: str) -> None:
    for name, pod in pod_specs(overlay).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == UID, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            assert "command" not in c, f"{name}: `command` would bypass the image's tini"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
    for role in ("driver", "executor"):
        assert spark(overlay)[role]["securityContext"]["runAsUser"] == UID


def config_map(overlay: str) -> dict[str, str]:
    (cm,) = [o for n, o in objects(overlay, "ConfigMap").items()
             if n.startswith("segstream-settings-")]
    data: dict[str, str] = cm["data"]
    return data


def env_refs(overlay: str) -> list[tuple[str, str, str]]:
    """(workload, kind, name) of every envFrom reference."""
    out = []
    specs = [(n, c.get("envFrom", [])) for n, p in pod_specs(overlay).items()
             for c in p["containers"]]
    specs += [(f"segstream-stream {r}", spark(overlay)[r].get("envFrom", []))
              for r in ("driver", "executor")]
    for workload, refs in specs:
        for ref in refs:
            kind = "ConfigMap" if "configMapRef" in ref else "Secret"
            out.append((workload, kind, (ref.get("configMapRef") or ref["secretRef"])["name"]))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves_and_every_variable_is_a_setting(overlay: str) -> None:
    for workload, kind, name in env_refs(overlay):
        if (overlay, kind) == ("prod", "Secret"):
            assert name == "segstream-secrets", "prod expects the Secret docs/deploy.md names"
            continue
        assert name in objects(overlay, kind), f"{workload} refers to missing {kind} {name}"
    assert not unknown_settings(config_map(overlay))
    for secret in objects(overlay, "Secret").values():
        assert not unknown_settings(secret["stringData"])
    for pod in [*pod_specs(overlay).values()]:
        for c in pod["containers"]:
            assert not unknown_settings({e["name"]: 1 for e in c.get("env", [])})
    for role in ("driver", "executor"):
        assert not unknown_settings({e["name"]: 1 for e in spark(overlay)[role].get("env", [])})
    assert "Secret" not in {o["kind"] for o in render("prod")}, (
        "prod must not render the placeholder Secret (apply would overwrite the real one)")


def test_dev_settings_build_and_the_placeholder_secret_is_refused_in_prod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = one("dev", "Secret", "segstream-secrets")["stringData"]
    env = {**config_map("dev"), **secret}
    assert env["SEGSTREAM_ENV"] == "dev"
    for e in spark("dev")["driver"]["env"]:
        env[e["name"]] = e["value"]
    build_settings(monkeypatch, env)
    prod = {**config_map("prod"), **secret}
    assert prod["SEGSTREAM_ENV"] == "prod"
    with pytest.raises(pydantic.ValidationError, match="api_keys holds a placeholder"):
        build_settings(monkeypatch, prod)
