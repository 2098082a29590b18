# The nlumon stream worker (CPU, ONNX Runtime). Build: docker build -t nlumon .
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY nlumon ./nlumon
COPY streams ./streams
COPY monitor ./monitor
COPY detectors ./detectors
COPY model_runtime ./model_runtime
COPY dashboards ./dashboards
COPY alerts ./alerts
COPY labeling ./labeling
RUN pip install --no-cache-dir -c constraints.txt .

# Models are mounted (see compose.yaml); the worker reads NLUMON_MODEL__PACKAGE_PATH.
USER nobody
ENTRYPOINT ["nlumon"]
CMD ["worker"]
