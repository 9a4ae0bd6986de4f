"""The Kubernetes manifests (deploy/k8s), rendered offline for every overlay and checked three ways:
against Kubernetes' own schemas (kubernetes-validate --strict), the custom resources against the JSON
schemas in deploy/k8s/schemas, and against the code: every variable a manifest sets is one the process
reads, every process loads its settings in production from what the manifest gives it, ports, probes,
queues, metrics, roles and the database's connection budget agree with the code."""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from jsonschema import Draft202012Validator
from sqlalchemy.engine import make_url

from services.notification.dispatcher import WORKER as SENDER_WORKER
from shared.cli import _SETTINGS, PROCESSES, SERVICES
from shared.migrations import migrator_url_for
from shared.settings import DEFAULT_PORTS, SHARED_VARIABLES, ServiceSettings
from shared.topology import QUEUES
from tests.deploy.promql import code_metrics, unknown_metric_uses

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
SCHEMAS = {
    json.loads(p.read_text())["properties"]["kind"]["const"]: json.loads(p.read_text())
    for p in sorted((K8S / "schemas").glob("*.json"))
}
CUSTOM_KINDS = {
    "RabbitmqCluster",
    "User",
    "Permission",
    "Cluster",
    "ScheduledBackup",
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PrometheusRule",
}
KEDA_MODES = {"QueueLength", "MessageRate"}
# Read by shared/cli.py itself (not by a settings class): found in its source below.
CLI_VARIABLES = frozenset(
    re.findall(r'os\.environ\.get\("([A-Z_]+)"', (ROOT / "shared" / "cli.py").read_text())
)
# Read by asyncpg, like libpq, when the URL has no password (the migration Job's superuser).
LIBPQ_VARIABLES = frozenset({"PGPASSWORD"})
# Variables the manifests set for settings being added on main at the same time (issue 22: the notification
# service's address hash secret). Accepted only while the code does not read them yet; once it does, the
# ordinary check applies. Empty this set after the merge.
# Connections a process opens besides its pool (DatabaseSignal's LISTEN connection, a relay wake-up), and
# what the database keeps for others: superuser_reserved_connections 3, operator, replication, backups and
# monitoring 15 (see deploy/k8s/base/postgres.yaml).
EXTRA_CONNECTIONS_PER_PROCESS = 2
RESERVED_CONNECTIONS = 3 + 15
# The deployments and the processes of shared/cli.py PROCESSES they run.
DEPLOYMENT_PROCESS = {
    "mitwirkung-registration": "registration",
    "mitwirkung-notification-ingest": "notification",
    "mitwirkung-notification-sender": "notification-sender",
    "mitwirkung-proposals": "proposals",
    "mitwirkung-console": "console",
}


def _render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    docs = _render(request.param)
    path = tmp_path_factory.mktemp("rendered") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return {"name": request.param, "docs": docs, "path": path}


def _of(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def _named(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in _of(docs, kind) if d["metadata"]["name"] == name]
    return doc


def _containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def _service_of(container: dict) -> str:
    args = container.get("args", [])
    assert container.get("command") == ["mitwirkung"]
    assert args[:1] == ["serve"], args
    return args[1]


def _settings_class(service: str) -> type[ServiceSettings]:
    module, _, name = _SETTINGS[service].partition(":")
    return getattr(importlib.import_module(module), name)


def _variables_read(service: str) -> frozenset[str]:
    """The names a service's settings read: its fields with its prefix, and the shared names unprefixed."""
    cls = _settings_class(service)
    prefix = str(cls.model_config.get("env_prefix") or "")
    fields = set(cls.model_fields)
    return frozenset(
        {prefix + f.upper() for f in fields} | {v.upper() for v in SHARED_VARIABLES if v in fields}
    )


def _placeholder(secret: str, key: str) -> str:
    """A value of the shape the Secret holds: URLs for `uri`, otherwise 48 random bytes."""
    token = secrets.token_urlsafe(48)
    if key == "uri" and re.fullmatch(r"mitwirkung-[a-z]+-db(-migrator)?", secret):
        role = secret.removeprefix("mitwirkung-").replace("-db-migrator", "_migrator").replace("-db", "")
        return f"postgresql+asyncpg://mitwirkung_{role}:{token}@mitwirkung-db-rw:5432/mitwirkung"
    if key == "uri" and secret.endswith("-amqp"):
        return f"amqp://{secret.removesuffix('-amqp')}:{token}@mitwirkung-rabbitmq:5672/%2F"
    return token


def _environment(docs: list[dict], container: dict) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The container's environment as the kubelet would make it (secrets as placeholders), and where each
    secret-backed variable comes from."""
    env: dict[str, str] = {}
    from_secret: dict[str, tuple[str, str]] = {}
    for source in container.get("envFrom", []):
        config = _named(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(config["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = _placeholder(ref["name"], ref["key"])
            from_secret[var["name"]] = (ref["name"], ref["key"])
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = _named(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            raise AssertionError(f"unexpected source of {var['name']}")
    return env, from_secret


def _load(service: str, env: dict[str, str]) -> ServiceSettings:
    with mock.patch.dict(os.environ, env, clear=True):
        settings = _settings_class(service)()
        problems = settings.startup_problems()
        assert problems == [], problems
        settings.refuse_unsafe()
    return settings


# --- Kubernetes' own schemas and ours -----------------------------------------------------------------------


def test_kubernetes_validate_strict_passes_and_only_our_custom_resources_lack_a_schema(overlay) -> None:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(exe), "--strict", "-k", "1.32.0", str(overlay["path"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "passed for resource deployment/mitwirkung-registration" in output
    unknown = set(re.findall(r"Couldn't find schema for kind (\w+)", output))
    assert unknown <= CUSTOM_KINDS, unknown
    assert unknown == {d["kind"] for d in overlay["docs"]} & CUSTOM_KINDS


def test_custom_resources_match_their_schemas(overlay) -> None:
    assert set(SCHEMAS) == CUSTOM_KINDS
    seen = set()
    for doc in overlay["docs"]:
        if doc["kind"] in CUSTOM_KINDS:
            errors = [e.message for e in Draft202012Validator(SCHEMAS[doc["kind"]]).iter_errors(doc)]
            assert errors == [], (doc["kind"], doc["metadata"]["name"], errors)
            seen.add(doc["kind"])
    assert seen == CUSTOM_KINDS


def test_a_schema_refuses_an_unknown_or_misspelt_field() -> None:
    doc = _named(_render(OVERLAYS[0]), "Cluster", "mitwirkung-db")
    doc["spec"]["instance"] = 3
    assert list(Draft202012Validator(SCHEMAS["Cluster"]).iter_errors(doc))


# --- the code ----------------------------------------------------------------------------------------------


def test_every_variable_set_is_read_by_the_process(overlay) -> None:
    docs = overlay["docs"]
    for deployment in _of(docs, "Deployment"):
        for container in _containers(deployment):
            service = _service_of(container)
            env, _ = _environment(docs, container)
            known = _variables_read(service)
            unknown = set(env) - known
            assert unknown == set(), (deployment["metadata"]["name"], sorted(unknown))
    (job,) = _of(docs, "Job")
    (container,) = _containers(job)
    assert container["args"][0] == "setup"
    env, _ = _environment(docs, container)
    known = set(CLI_VARIABLES | LIBPQ_VARIABLES).union(*(_variables_read(s) for s in SERVICES))
    assert set(env) - known == set()


def test_the_variable_check_catches_a_typo() -> None:
    assert "REGISTRATION_DATABASE_URL" in _variables_read("registration")
    assert "REGISTRATION_DATABSE_URL" not in _variables_read("registration")
    assert "NOTIFICATION_SMTP_HOST" not in _variables_read("registration")
    assert "STAFF_JWT_SECRET" in _variables_read("proposals")


def test_every_process_loads_its_settings_in_production(overlay) -> None:
    docs = overlay["docs"]
    for deployment in _of(docs, "Deployment"):
        (container,) = _containers(deployment)
        service = _service_of(container)
        env, from_secret = _environment(docs, container)
        assert env["ENVIRONMENT"] == "production"
        settings = _load(service, env)
        prefix = str(settings.model_config.get("env_prefix"))
        assert settings.environment == "production"
        assert settings.host == "0.0.0.0"
        assert settings.database_url == env[f"{prefix}DATABASE_URL"]
        # The runtime role of this service, from its own Secret; no migrator credentials in a serving pod.
        assert make_url(settings.database_url).username == f"mitwirkung_{service}"
        assert from_secret[f"{prefix}DATABASE_URL"] == (f"mitwirkung-{service}-db", "uri")
        if settings.uses_broker() or f"{prefix}AMQP_URL" in env:
            assert from_secret[f"{prefix}AMQP_URL"] == (f"mitwirkung-{service}-amqp", "uri")
        assert not settings.migrator_database_url
        # The console signs with its own key (a mounted Secret) and needs no STAFF_JWT_SECRET.
        staff_secret = () if service == "console" else ("STAFF_JWT_SECRET",)
        for variable in (*staff_secret, *(v for v in env if v.endswith(("_SECRET", "_PASSWORD")))):
            assert variable in from_secret, f"{variable} must come from a Secret"
        for url in (settings.registration_public_url, settings.proposals_public_url):
            assert url.startswith("https://") and "localhost" not in url


def test_the_migration_job_runs_setup_with_the_platforms_roles_as_the_migrators(overlay) -> None:
    docs = overlay["docs"]
    (job,) = _of(docs, "Job")
    (container,) = _containers(job)
    assert container["args"] == ["setup", "--roles-exist"]
    env, from_secret = _environment(docs, container)
    assert make_url(env["MITWIRKUNG_ADMIN_DATABASE_URL"]).host == "mitwirkung-db-rw"
    with mock.patch.dict(os.environ, env, clear=True):
        for service in SERVICES:
            settings = _settings_class(service)()
            runtime = make_url(settings.database_url).username
            migrator = make_url(settings.migrator_database_url).username
            assert runtime == f"mitwirkung_{service}"
            assert migrator == make_url(migrator_url_for(settings.database_url)).username
            prefix = str(settings.model_config.get("env_prefix"))
            assert from_secret[f"{prefix}MIGRATOR_DATABASE_URL"] == (
                f"mitwirkung-{service}-db-migrator",
                "uri",
            )


def test_ports_probes_and_processes_match_the_code(overlay) -> None:
    docs = overlay["docs"]
    deployments = {d["metadata"]["name"]: d for d in _of(docs, "Deployment")}
    assert set(deployments) == set(DEPLOYMENT_PROCESS)
    processes = {name: (service, extra) for name, service, extra in PROCESSES}
    assert set(DEPLOYMENT_PROCESS.values()) == set(processes)
    for name, deployment in deployments.items():
        (container,) = _containers(deployment)
        service, extra = processes[DEPLOYMENT_PROCESS[name]]
        assert _service_of(container) == service
        env, _ = _environment(docs, container)
        for variable, value in extra.items():
            assert env.get(variable) == value, (name, variable)
        settings = _load(service, env)
        expected_port = int(extra.get("NOTIFICATION_PORT", DEFAULT_PORTS[service]))
        assert settings.port == expected_port
        (port,) = container["ports"]
        assert (port["name"], port["containerPort"]) == ("http", expected_port)
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        with mock.patch.dict(os.environ, env, clear=True):
            app = importlib.import_module(f"services.{service}.app").create_app(settings)
        routes = {getattr(route, "path", None) for route in app.routes}
        assert {"/readyz", "/healthz", "/metrics"} <= routes
        # The Service and the ServiceMonitor reach that port by its name.
        svc = _named(docs, "Service", name)
        (service_port,) = svc["spec"]["ports"]
        assert service_port["targetPort"] == "http" and service_port["port"] == expected_port
        assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (monitor,) = _of(docs, "ServiceMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert {"port": "http", "path": "/metrics"}.items() <= monitor["spec"]["endpoints"][0].items()
        # Stopping: the preStop pause and the process's own grace fit in the pod's grace period.
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > pause + settings.shutdown_grace_seconds


def test_pods_run_locked_down(overlay) -> None:
    docs = overlay["docs"]
    for workload in [*_of(docs, "Deployment"), *_of(docs, "Job")]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (
            isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
        )
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            image = container["image"]
            assert re.fullmatch(r".+/mitwirkung:[0-9][\w.-]*", image), (
                image
            )  # the overlay's tag, never :latest


def test_every_deployment_has_a_disruption_budget(overlay) -> None:
    docs = overlay["docs"]
    budgets = _of(docs, "PodDisruptionBudget")
    for deployment in _of(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1 and matching[0]["spec"]["maxUnavailable"] == 1


def test_keda_scales_on_queues_and_metrics_that_exist(overlay) -> None:
    docs = overlay["docs"]
    queues = {q.name for q in QUEUES}
    metrics = code_metrics()
    auths = {a["metadata"]["name"] for a in _of(docs, "TriggerAuthentication")}
    deployments = {d["metadata"]["name"]: d for d in _of(docs, "Deployment")}
    keda_permission = _named(docs, "Permission", "mitwirkung-keda")["spec"]["permissions"]
    scaled = set()
    for scaled_object in _of(docs, "ScaledObject"):
        target = scaled_object["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        assert "replicas" not in deployments[target]["spec"], "KEDA owns the replica count"
        (service,) = {_service_of(c) for c in _containers(deployments[target])}
        for trigger in scaled_object["spec"]["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] == "rabbitmq":
                assert meta["protocol"] == "amqp"
                assert meta["mode"] in KEDA_MODES, meta["mode"]
                assert meta["queueName"] in queues, meta["queueName"]
                assert meta["queueName"].startswith(f"{service}."), "a deployment scales on its own queue"
                assert int(meta["value"]) > 0
                assert trigger["authenticationRef"]["name"] in auths
                assert re.fullmatch(keda_permission["read"], meta["queueName"])
            elif trigger["type"] == "prometheus":
                assert unknown_metric_uses(meta["query"], metrics) == []
                assert f'worker="{SENDER_WORKER}"' in meta["query"]
                assert float(meta["threshold"]) > 0
            else:
                raise AssertionError(trigger["type"])
        scaled.add(target)
    assert scaled == {
        "mitwirkung-notification-ingest",
        "mitwirkung-notification-sender",
        "mitwirkung-proposals",
    }


def test_the_keda_mode_check_catches_a_misspelling() -> None:
    assert "Queuelength" not in KEDA_MODES and "QueueLength" in KEDA_MODES


def test_roles_and_broker_users_match_the_code(overlay) -> None:
    docs = overlay["docs"]
    cluster = _named(docs, "Cluster", "mitwirkung-db")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    expected = set()
    for service in SERVICES:
        with mock.patch.dict(os.environ, {}, clear=True):
            default = _settings_class(service)().database_url  # the development naming: mitwirkung_<service>
        runtime = make_url(default).username
        migrator = make_url(migrator_url_for(default)).username
        expected |= {runtime, migrator}
        assert roles[runtime]["passwordSecret"]["name"] == f"mitwirkung-{service}-db"
        assert roles[migrator]["passwordSecret"]["name"] == f"mitwirkung-{service}-db-migrator"
        assert all(roles[r]["login"] and roles[r]["ensure"] == "present" for r in (runtime, migrator))
        with mock.patch.dict(os.environ, {}, clear=True):
            if not _settings_class(service)().uses_broker():
                # The console: no broker user at all.
                assert not [u for u in _of(docs, "User") if u["metadata"]["name"] == f"mitwirkung-{service}"]
                continue
        user = _named(docs, "User", f"mitwirkung-{service}")
        assert user["spec"]["importCredentialsSecret"]["name"] == f"mitwirkung-{service}-amqp"
        permission = _named(docs, "Permission", f"mitwirkung-{service}")["spec"]
        assert permission["userReference"]["name"] == f"mitwirkung-{service}"
        for queue in QUEUES:  # every service declares (configures) and binds every queue
            for name in (queue.name, queue.retry_queue, queue.dead_letter_queue):
                assert re.fullmatch(permission["permissions"]["configure"], name), name
                assert re.fullmatch(permission["permissions"]["write"], name), name
            # ... and consumes only its own
            own = queue.name.startswith(f"{service}.")
            assert bool(re.fullmatch(permission["permissions"]["read"], queue.name)) == own, queue.name
        for exchange in ("mitwirkung.events", "mitwirkung.retry", "mitwirkung.dlx"):
            assert re.fullmatch(permission["permissions"]["configure"], exchange)
            assert re.fullmatch(permission["permissions"]["read"], exchange)
    assert set(roles) == expected
    assert cluster["spec"]["instances"] == 3
    rabbit = _named(docs, "RabbitmqCluster", "mitwirkung-rabbitmq")["spec"]
    assert rabbit["replicas"] == 3
    assert "cluster_partition_handling = pause_minority" in rabbit["rabbitmq"]["additionalConfig"]
    assert rabbit["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_the_connections_fit_in_max_connections(overlay) -> None:
    docs = overlay["docs"]
    cluster = _named(docs, "Cluster", "mitwirkung-db")["spec"]
    max_connections = int(cluster["postgresql"]["parameters"]["max_connections"])
    limits = {r["name"]: r["connectionLimit"] for r in cluster["managed"]["roles"]}
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"] for s in _of(docs, "ScaledObject")
    }
    used: dict[str, int] = defaultdict(int)
    for deployment in _of(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        (container,) = _containers(deployment)
        service = _service_of(container)
        env, _ = _environment(docs, container)
        settings = _load(service, env)
        replicas = scaled.get(name, deployment["spec"].get("replicas"))
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        used[make_url(settings.database_url).username or ""] += (replicas + surge) * (
            settings.database_pool_size + EXTRA_CONNECTIONS_PER_PROCESS
        )
    for role, connections in used.items():
        assert connections <= limits[role], (role, connections, limits[role])
    assert sum(limits.values()) + RESERVED_CONNECTIONS <= max_connections


def test_network_policies_open_what_the_processes_use(overlay) -> None:
    docs = overlay["docs"]
    policies = {p["metadata"]["name"]: p["spec"] for p in _of(docs, "NetworkPolicy")}
    deny = policies["mitwirkung-default-deny"]
    assert (
        set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    )

    def ports(rule_list: list[dict]) -> set:
        return {(p["protocol"], p["port"]) for rule in rule_list for p in rule["ports"]}

    assert {("UDP", 53), ("TCP", 53), ("TCP", 5432)} <= ports(
        policies["mitwirkung-egress-dns-postgres"]["egress"]
    )
    # The default deny selects the application's pods only: not the broker's or the database's, whose
    # operators make pods with their custom resource's labels.
    app_label = deny["podSelector"]["matchLabels"]
    for kind in ("RabbitmqCluster", "Cluster"):
        for doc in _of(docs, kind):
            labels = {
                **doc["metadata"].get("labels", {}),
                **doc["spec"].get("inheritedMetadata", {}).get("labels", {}),
            }
            assert not app_label.items() <= labels.items(), doc["metadata"]["name"]
    amqp = policies["mitwirkung-egress-amqp"]
    assert ports(amqp["egress"]) == {("TCP", 5672)}
    (selector,) = amqp["podSelector"]["matchExpressions"]
    assert (selector["key"], selector["operator"]) == ("app.kubernetes.io/component", "In")
    for deployment in _of(docs, "Deployment"):
        # Exactly the processes whose runtime uses the broker may reach it (not the mail sender).
        (container,) = _containers(deployment)
        service = _service_of(container)
        env, _ = _environment(docs, container)
        settings = _load(service, env)
        with mock.patch.dict(os.environ, env, clear=True):
            app = importlib.import_module(f"services.{service}.app").create_app(settings)
        component = deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        assert (component in selector["values"]) == app.state.runtime.uses_broker, component
    sender = _named(docs, "Deployment", "mitwirkung-notification-sender")
    env, _ = _environment(docs, _containers(sender)[0])
    smtp = policies["mitwirkung-sender-egress-smtp"]
    assert (
        smtp["podSelector"]["matchLabels"].items() <= sender["spec"]["template"]["metadata"]["labels"].items()
    )
    assert ports(smtp["egress"]) == {("TCP", int(env["NOTIFICATION_SMTP_PORT"]))}
    assert ports(policies["mitwirkung-ingress-http"]["ingress"]) == {("TCP", "http")}
    assert ports(policies["mitwirkung-ingress-metrics"]["ingress"]) == {("TCP", "http")}
