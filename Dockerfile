# syntax=docker/dockerfile:1
# Images of the stack, one target each:
#   serving  - the Litestar app (no Prefect worker, no Dask)
#   worker   - Prefect process worker that runs the training flows (carries the Dask extra)
#   mlflow   - MLflow tracking server with its PostgreSQL driver baked in
# Under podman, build with `--format docker` (the OCI format drops HEALTHCHECK).
# Any Debian bookworm image with python3 and venv works as the base. Where no registry is
# reachable, `make test-images` bootstraps one (Debian's python3 3.11) with debootstrap and
# tags it under this name, so the FROM lines resolve without a pull.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---- builder stages: one virtualenv (/opt/venv) per runtime; dependencies before code, so
# a code edit rebuilds only the small wheel layer. The dependency lists come straight from
# pyproject.toml (never restated here); `deps` copies only those lists, so edits elsewhere in
# pyproject.toml keep its cached install. Both runtimes get the PostgreSQL driver: the label store
# is a PostgreSQL database in the stack.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
open("requirements.txt", "w").write("\n".join(p["dependencies"] + p["optional-dependencies"]["postgres"]) + "\n"); \
open("dask.txt", "w").write("\n".join(p["optional-dependencies"]["dask"]) + "\n")'

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT=120
WORKDIR /src
COPY --from=requirements /src/requirements.txt /src/dask.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt

FROM deps AS deps-worker
RUN --mount=type=cache,target=/root/.cache/pip /opt/venv/bin/pip install -r dask.txt

FROM deps AS wheel
COPY pyproject.toml README.md ./
COPY vehicle_model ./vehicle_model
COPY feedback ./feedback
COPY tasks ./tasks
COPY flows ./flows
COPY serving ./serving
COPY cli ./cli
RUN --mount=type=cache,target=/root/.cache/pip /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels .

FROM deps AS venv-serving
COPY --from=wheel /wheels /wheels
RUN /opt/venv/bin/pip install --no-deps /wheels/*.whl

FROM deps-worker AS venv-worker
COPY --from=wheel /wheels /wheels
RUN /opt/venv/bin/pip install --no-deps /wheels/*.whl

FROM ${PYTHON_IMAGE} AS venv-mlflow
ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT=120
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv && /opt/venv/bin/pip install "mlflow>=3.17,<3.18" "psycopg[binary]>=3.2"

# ---- shared runtime settings
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# /app/review is made here so the `review` volume mounted on it starts owned by `app`.
RUN useradd --create-home --uid 10001 app && mkdir -p /app/data /app/logs /app/review && chown -R app /app
WORKDIR /app

# ---- serving: `vehicles serve` on 0.0.0.0:8000
FROM runtime AS serving
COPY --from=venv-serving /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH SERVING_HOST=0.0.0.0 SERVING_PORT=8000
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"SERVING_PORT\", \"8000\")}/health', timeout=4)"
CMD ["vehicles", "serve"]

# ---- worker: runs deployments from /app (prefect.yaml's pull step points there)
FROM runtime AS worker
COPY --from=venv-worker /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH VEHICLES_PROJECT_DIR=/app PIPELINE_DATA_DIR=/app/data \
    PIPELINE_PREPARED_DIR=/app/data/prepared PIPELINE_FEATURE_CACHE_DIR=/app/data/features PIPELINE_LOG_DIR=/app/logs
COPY --chown=app prefect.yaml ./
COPY --chown=app flows ./flows
USER app
CMD ["prefect", "worker", "start", "--pool", "vehicles-process"]

# ---- mlflow: tracking server (PostgreSQL backend, artifacts served from a volume)
FROM runtime AS mlflow
COPY --from=venv-mlflow /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER app
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
