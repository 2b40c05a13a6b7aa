# ClusterPulse image: worker, simulator (and its served exporter fleet), collector, topic init and webhook receiver (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# dependencies first, so code changes do not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir -p pipeline producers && touch pipeline/__init__.py producers/__init__.py \
    && pip install . && pip uninstall -y clusterpulse
COPY pipeline pipeline
COPY producers producers
COPY sql sql
COPY scenarios scenarios
# editable, so `sql/` beside the package is found by `clusterpulse query`
RUN pip install --no-deps -e . && useradd --create-home --uid 10001 pulse && mkdir /data && chown pulse /data
USER pulse
ENV CLUSTERPULSE_DATA_DIR=/data
ENTRYPOINT ["clusterpulse"]
CMD ["--help"]
