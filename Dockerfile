# trustlab: one image for the API (`python -m backend.serve`, which starts the training workers), the UI
# (Streamlit) and, with WITH_RAY=1, the Ray head and worker nodes. Runtime dependencies only (requirements.txt,
# plus requirements-ray.txt with WITH_RAY=1): no test tools, no benchmark peers. Runs as the user `trustlab`.
# Needs BuildKit (the default builder of Docker 23+ and of `docker compose build`).
#
# Build arguments (docker compose passes them from TRUSTLAB_* variables, see docker-compose.yml):
#   BASE_IMAGE           a Debian bookworm image with python3.11 and its venv module (default python:3.11-slim-bookworm)
#   TORCH_VARIANT        cpu (default: the CPU wheels of torch, about 1 GB smaller) or cuda (the CUDA wheels that
#                        the package index serves as plain `torch`; they run on a CPU too)
#   TORCH_CPU_INDEX_URL  where the CPU wheels come from (default PyTorch's index)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST   the package index(es) for every other wheel
#   WITH_RAY             1: add the Ray extra (the compose `cluster` profile)
# A CA certificate for the build's downloads (a proxy that inspects TLS) is a build secret named `ca`
# (`docker build --secret id=ca,src=FILE`, or TRUSTLAB_BUILD_CA_FILE with docker compose); it is also added to
# the image's trust store, so runtime downloads (torchvision datasets) trust it too.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TRUSTLAB_VAR_DIR=/srv/trustlab/var \
    TRUSTLAB_DATA_DIR=/srv/trustlab/data

# The extra CA first (apt may fetch over https), then Fashion-MNIST from Debian (/usr/share/datasets/fashion-mnist)
# so the paper's main experiments run offline, and the virtualenv that holds every Python dependency.
RUN --mount=type=secret,id=ca \
    set -eu; \
    if [ -s /run/secrets/ca ]; then \
      mkdir -p /usr/local/share/ca-certificates && cp /run/secrets/ca /usr/local/share/ca-certificates/trustlab-build-ca.crt; \
      command -v update-ca-certificates >/dev/null || { echo "BASE_IMAGE lacks ca-certificates" >&2; exit 1; }; \
      update-ca-certificates >/dev/null; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist; \
    rm -rf /var/lib/apt/lists/*; \
    python3.11 -m venv "$VIRTUAL_ENV"; \
    useradd --system --uid 10001 --user-group --home-dir /srv/trustlab --no-create-home trustlab

WORKDIR /app
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_TRUSTED_HOST=
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.txt requirements-ray.txt ./
# torch/torchvision first: the CPU wheels (`2.14.1+cpu` satisfies requirements.txt's `torch==2.14.1`, so the next
# step keeps them), or nothing here for the CUDA build.
RUN set -eu; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    [ -n "${PIP_TRUSTED_HOST:-}" ] || unset PIP_TRUSTED_HOST; \
    case "$TORCH_VARIANT" in \
      cpu) grep -E '^(torch|torchvision)==' requirements.txt > /tmp/torch.txt; \
           pip install --index-url "$TORCH_CPU_INDEX_URL" -r /tmp/torch.txt; rm /tmp/torch.txt ;; \
      cuda) ;; \
      *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install -r requirements.txt
# The Ray executor is an optional extra: docker compose's `cluster` profile builds with WITH_RAY=1.
ARG WITH_RAY=0
RUN set -eu; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; [ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL; \
    [ -n "${PIP_TRUSTED_HOST:-}" ] || unset PIP_TRUSTED_HOST; \
    if [ "$WITH_RAY" = "1" ]; then pip install -r requirements-ray.txt; fi

COPY trainer/ trainer/
COPY backend/ backend/
COPY frontend/ frontend/
COPY alembic.ini ./
COPY .streamlit/ .streamlit/
# Live charts load Plotly from frontend/static/: copied from the installed plotly package at build time. The
# Numba kernels' cache (trainer/optim/__pycache__) and the stores are the only places the user writes.
RUN python -m frontend.live_chart \
 && mkdir -p "$TRUSTLAB_VAR_DIR" "$TRUSTLAB_DATA_DIR" trainer/optim/__pycache__ \
 && chown -R trustlab:trustlab /srv/trustlab trainer/optim/__pycache__

USER trustlab
EXPOSE 8000 8501
# The API's liveness; docker-compose.yml gives every service its own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"
# backend.serve refuses to listen beyond loopback without TRUSTLAB_API_TOKEN.
ENV TRUSTLAB_HOST=0.0.0.0 TRUSTLAB_PORT=8000
CMD ["python", "-m", "backend.serve"]
