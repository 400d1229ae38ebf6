# One image for the serving app, the training flows and the Prefect worker.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY vehicle_model ./vehicle_model
COPY tasks ./tasks
COPY flows ./flows
COPY serving ./serving
COPY cli ./cli
COPY prefect.yaml ./
RUN pip install ".[dask]"
RUN useradd --create-home app && mkdir -p /app/data /app/logs && chown -R app /app
USER app
EXPOSE 8000
CMD ["vehicles", "serve", "--host", "0.0.0.0", "--port", "8000"]
