# syntax=docker/dockerfile:1
# The segstream image: every command (`segstream stream|update|serve|webhooks ...`),
# the MLflow tracking server of docker-compose.yml, and Spark's driver and executors
# on Kubernetes (deploy/docker/entrypoint.sh). Build: docker build -t segstream .
ARG PYTHON_VERSION=3.11

# --- build: a virtualenv with segstream and its dependencies -----------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY segstream ./segstream
COPY streaming ./streaming
COPY training ./training
COPY serving ./serving
# psycopg2: the MLflow server's Postgres backend store (docker-compose.yml), not a
# dependency of segstream itself.
RUN pip install --upgrade pip \
 && pip install . "psycopg2-binary>=2.9,<3"

# --- runtime: Java for Spark, tini as PID 1, a non-root user ------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG PYTHON_VERSION
# The JRE's postinst links man pages; slim images have no man1 folder.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f /usr/bin/java)")")" /opt/java
RUN groupadd --system --gid 10001 segstream \
 && useradd --system --uid 10001 --gid segstream --create-home --home-dir /home/segstream \
      --shell /usr/sbin/nologin segstream \
 && mkdir -p /var/lib/segstream /var/lib/mlflow \
 && chown segstream:segstream /var/lib/segstream /var/lib/mlflow
COPY --from=build /opt/venv /opt/venv
RUN ln -s /opt/venv/lib/python${PYTHON_VERSION}/site-packages/pyspark /opt/spark
COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/segstream/entrypoint.sh
# spark-submit needs a Python file: this one runs the `segstream` command line
# (SparkApplication: mainApplicationFile local:///opt/segstream/main.py, arguments
# ["stream", "--source", "kafka"]).
RUN printf 'from segstream.app.cli import main\n\nmain()\n' > /opt/segstream/main.py

ENV PATH=/opt/venv/bin:$PATH \
    JAVA_HOME=/opt/java \
    SPARK_HOME=/opt/spark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYTHONUNBUFFERED=1 \
    SEGSTREAM_DATA_DIR=/var/lib/segstream
USER 10001:10001
WORKDIR /home/segstream
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/segstream/entrypoint.sh"]
CMD ["segstream", "--help"]
