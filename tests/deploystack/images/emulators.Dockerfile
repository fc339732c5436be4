# `./run deploy-test` only: the assetsync image plus the project's emulators (which never ship in it),
# run as the `emulators` service of tests/deploystack/compose.test.yml. The emulators need nothing
# beyond what the image holds (starlette, uvicorn, msgspec, assetsync), so the package is copied in.
ARG ASSETSYNC_IMAGE
FROM ${ASSETSYNC_IMAGE}
COPY assetsync_emulators /opt/assetsync-emulators/assetsync_emulators
ENV PYTHONPATH=/opt/assetsync-emulators
