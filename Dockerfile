# The nlumon stream worker (CPU, ONNX Runtime). Build: docker build -t nlumon .
# Runs as the unprivileged user `nlumon` (uid 10001); its state (the alert store, reports, Faust's data dir) goes to
# the volume /var/lib/nlumon, the model registry is mounted at /models (read-only; files readable by uid 10001).
# The worker needs a key for the text hash: NLUMON_STREAM__PII_HASH_KEY (docs/security.md, Keys and secrets).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

COPY pyproject.toml constraints.txt README.md LICENSE /src/
COPY nlumon /src/nlumon
COPY streams /src/streams
COPY monitor /src/monitor
COPY detectors /src/detectors
COPY model_runtime /src/model_runtime
COPY dashboards /src/dashboards
COPY alerts /src/alerts
COPY labeling /src/labeling
COPY experiments /src/experiments
RUN pip install --no-cache-dir -c /src/constraints.txt /src && rm -rf /src

# An unprivileged user that owns only its state directory (the installed code stays root-owned and read-only).
RUN groupadd --system --gid 10001 nlumon \
 && useradd --system --uid 10001 --gid nlumon --home-dir /var/lib/nlumon --shell /usr/sbin/nologin nlumon \
 && install -d -o nlumon -g nlumon -m 0750 /var/lib/nlumon
ENV NLUMON_SERVICES__RUN_DIR=/var/lib/nlumon NLUMON_MODEL__PACKAGE_PATH=/models/current HOME=/var/lib/nlumon
VOLUME ["/var/lib/nlumon"]
WORKDIR /var/lib/nlumon

USER 10001:10001
ENTRYPOINT ["nlumon"]
CMD ["worker"]
