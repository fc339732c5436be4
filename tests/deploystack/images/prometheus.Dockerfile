# Local stand-in for the official prom/prometheus image: Debian's prometheus, same entrypoint
# (flags only in `command:`), TSDB under /prometheus, non-root.
ARG BASE_IMAGE=assetsync-local/debian:bookworm
FROM ${BASE_IMAGE}
# wget: the compose healthcheck's probe (the official image has busybox wget). The time-zone data
# of libjs-moment-timezone (≈ 200 MB, only for the web UI's date picker) is left out.
RUN echo "path-exclude /usr/share/javascript/moment-timezone/*" > /etc/dpkg/dpkg.cfg.d/90no-moment-tz \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus \
    && chown prometheus:prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
