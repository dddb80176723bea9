"""deploy/k8s, rendered as kustomize renders it, validated offline: the built-in kinds against the
Kubernetes JSON schemas (the kubernetes-validate package), the FlinkDeployment against the Flink
Kubernetes Operator's CRD (from its API jar, which `make fetch` takes from Maven Central)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streamrec.localstack import stack_dir

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the kubectl client on our machines; the operator supports 1.2x and up
# Maven Central's newest operator API jar is 1.10.0, whose FlinkVersion enum stops at v1_20; the
# operator releases that run Flink 2.x add these values. Nothing else of the CRD is changed.
NEWER_FLINK_VERSIONS = ["v2_0", "v2_1", "v2_2"]


def _python_render() -> list[dict[str, Any]]:
    """What `kubectl kustomize deploy/k8s` makes of this base (resources, namespace, labels): for
    machines without kubectl, and to check that the base uses nothing else."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "labels", "resources"}
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
        labels.update(entry["pairs"])
    out = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / name).read_text()):
            if doc:
                doc["metadata"]["namespace"] = kustomization["namespace"]
                doc["metadata"].setdefault("labels", {}).update(labels)
                out.append(doc)
    return out


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    ours = {_key(d): d for d in _python_render()}
    kubectl = shutil.which("kubectl")
    if kubectl:  # kustomize as built into kubectl: its output must be ours
        text = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True).stdout
        theirs = {_key(d): d for d in yaml.safe_load_all(text) if d}
        assert theirs == ours
    return ours


def _crd_schema(jar: Path, kind_file: str, version: str) -> dict[str, Any]:
    with zipfile.ZipFile(jar) as zf:
        crd = yaml.safe_load(zf.read(f"META-INF/fabric8/{kind_file}"))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(served["schema"]["openAPIV3Schema"])
    # the API server checks these of every object itself; a CRD's schema leaves them out
    schema["properties"].update({"apiVersion": {"const": f"{crd['spec']['group']}/{version}"},
                                 "kind": {"const": crd["spec"]["names"]["kind"]}, "metadata": {"type": "object"}})
    return schema


def _strict(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema: int-or-string and nullable spelled out, and an
    object with listed properties closed, so that a misspelt field fails (the API server would
    prune it silently)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out and not node.get(
            "x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def operator_jar() -> Path:
    jars = sorted((stack_dir() / "lib" / "k8s-operator").glob("flink-kubernetes-operator-api-*.jar"))
    if not jars:
        pytest.fail(f"the operator's CRDs are missing from {stack_dir() / 'lib' / 'k8s-operator'}: run `make fetch`")
    return jars[-1]


def test_every_builtin_object_is_valid_for_kubernetes(rendered):
    builtin = [d for d in rendered.values() if d["kind"] != "FlinkDeployment"]
    assert {d["kind"] for d in builtin} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any error


def test_a_misspelt_field_fails_the_kubernetes_schema(rendered):
    broken = copy.deepcopy(rendered["Deployment", "streamrec-serve"])
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_flink_deployment_is_valid_for_the_operator_crd(rendered, operator_jar):
    schema = _crd_schema(operator_jar, "flinkdeployments.flink.apache.org-v1.yml", "v1beta1")
    version_enum = schema["properties"]["spec"]["properties"]["flinkVersion"]["enum"]
    assert "v1_20" in version_enum
    version_enum.extend(v for v in NEWER_FLINK_VERSIONS if v not in version_enum)
    doc = rendered["FlinkDeployment", "streamrec"]
    jsonschema.Draft7Validator(schema).validate(doc)
    # the schema is strict enough to catch a typo or a wrong value
    for path, value in ((("spec", "job", "upgradMode"), "savepoint"), (("spec", "job", "upgradeMode"), "savepnt")):
        broken = copy.deepcopy(doc)
        broken[path[0]][path[1]][path[2]] = value
        assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_the_job_runs_in_application_mode_from_savepoints_on_a_shared_store(rendered):
    spec = rendered["FlinkDeployment", "streamrec"]["spec"]
    assert spec["job"]["upgradeMode"] == "savepoint"
    assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert spec["job"]["args"] == ["-pym", "streamrec.jobs.job"]
    conf = spec["flinkConfiguration"]
    stores = [conf[k] for k in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
                                "high-availability.storageDir")]
    assert len({s.split("/")[2] for s in stores}) == 1 and all(s.startswith("s3://") for s in stores)
    assert conf["high-availability.type"] == "kubernetes"
    assert conf["classloader.parent-first-patterns.additional"] == "pemja."


def test_the_service_and_its_autoscaler_point_at_the_deployment(rendered):
    deployment = rendered["Deployment", "streamrec-serve"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = rendered["Service", "streamrec-serve"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    hpa = rendered["HorizontalPodAutoscaler", "streamrec-serve"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "streamrec-serve"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["streamrec", "serve"]
    assert "cpu" in container["resources"]["requests"]  # the autoscaler's utilisation needs a request
    config_maps = {name for kind, name in rendered if kind == "ConfigMap"}
    assert {e["configMapRef"]["name"] for e in container["envFrom"]} <= config_maps


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found, pattern
    return found.group(1)


def test_the_image_holds_the_jars_the_manifests_name(rendered):
    """docker/Dockerfile is not built here (README, "Container image"): at least the paths it lays
    out, the ones deploy/k8s names and the versions the poms build must agree."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    config = rendered["ConfigMap", "streamrec-config"]["data"]
    java_version = _first(r"<artifactId>streamrec-flink</artifactId>\s*<version>([^<]+)</version>",
                          (REPO / "java" / "pom.xml").read_text())
    connectors_pom = REPO / "streamrec" / "localstack" / "maven" / "flink-connectors.xml"
    kafka_version = _first(r"<flink-kafka.version>([^<]+)</flink-kafka.version>", connectors_pom.read_text())
    assert config["STREAMREC_SUPPORT_JAR"] == f"/opt/streamrec/lib/streamrec-flink-{java_version}.jar"
    assert config["STREAMREC_JARS"] == f"/opt/streamrec/lib/flink-sql-connector-kafka-{kafka_version}.jar"
    for name in ("STREAMREC_SUPPORT_JAR", "STREAMREC_JARS"):
        assert f"{name}={config[name]}" in dockerfile
    flink = rendered["FlinkDeployment", "streamrec"]["spec"]
    assert "flink:2.2.1" in dockerfile and flink["flinkVersion"] == "v2_2"
    assert flink["job"]["jarURI"] == "local:///opt/flink/opt/flink-python-2.2.1.jar"
    image = rendered["Deployment", "streamrec-serve"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == flink["image"]
