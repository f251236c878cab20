# trustlab: one image for the API (uvicorn backend.main:app, which starts the training workers) and the UI (Streamlit).
# Build: docker compose build    Run: docker compose up    (see docker-compose.yml)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRUSTLAB_VAR_DIR=/srv/trustlab/var \
    TRUSTLAB_DATA_DIR=/srv/trustlab/data

# Fashion-MNIST from Debian (/usr/share/datasets/fashion-mnist), so the paper's main experiments run offline.
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-ray.txt ./
RUN pip install -r requirements.txt
# The Ray executor is an optional extra: docker compose's `cluster` profile builds with WITH_RAY=1.
ARG WITH_RAY=0
RUN if [ "$WITH_RAY" = "1" ]; then pip install -r requirements-ray.txt; fi

COPY trainer/ trainer/
COPY backend/ backend/
COPY frontend/ frontend/
# Live charts load Plotly from frontend/static/: copy it from the installed plotly package at build time.
RUN python -m frontend.live_chart
COPY alembic.ini .
COPY .streamlit/ .streamlit/
RUN mkdir -p "$TRUSTLAB_VAR_DIR" "$TRUSTLAB_DATA_DIR"

EXPOSE 8000 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"
CMD ["python", "-m", "uvicorn", "backend.main:app", "--host", "0.0.0.0", "--port", "8000"]
