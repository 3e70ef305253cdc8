#!/usr/bin/env bash
# Entrypoint of the segstream image (run under tini, see the Dockerfile).
#
# Spark on Kubernetes (the spark-operator's SparkApplication) starts the image's
# entrypoint with the first argument `driver` or `executor` and describes the rest in
# SPARK_* environment variables; this script turns those into the JVM commands, with
# pyspark's own jars as the classpath. Anything else runs as given:
#   docker run segstream segstream serve
set -euo pipefail

spark_home=${SPARK_HOME:?SPARK_HOME is not set (the Dockerfile sets it to the pyspark folder)}
role=${1:-}

case "$role" in
  driver)
    shift
    # The driver runs in this pod in client mode; the operator already chose the master.
    exec "$spark_home/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    classpath="${SPARK_CONF_DIR:-$spark_home/conf}:$spark_home/jars/*"
    [ -z "${SPARK_EXTRA_CLASSPATH:-}" ] || classpath="$classpath:$SPARK_EXTRA_CLASSPATH"
    # Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
    java_opts=()
    while IFS= read -r name; do
      java_opts+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n || true)
    exec "${JAVA_HOME:?}/bin/java" "${java_opts[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY:?}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "$classpath" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL:?}" \
      --executor-id "${SPARK_EXECUTOR_ID:?}" \
      --cores "${SPARK_EXECUTOR_CORES:?}" \
      --app-id "${SPARK_APPLICATION_ID:?}" \
      --hostname "${SPARK_EXECUTOR_POD_IP:?}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:?}"
    ;;
  "")
    exec segstream --help
    ;;
  *)
    exec "$@"
    ;;
esac
