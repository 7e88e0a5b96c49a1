# One image for every part of Myriad: the API (`myriad serve`), workflow workers (`myriad worker`)
# and Ray nodes (`ray start`). Secrets (the dashboard token, the database password, model keys)
# come from the environment at run time, never from the image.
#
# The base images are arguments (compose.yaml passes PYTHON_IMAGE and NODE_IMAGE from .env), for
# machines that build them from elsewhere. A network that intercepts TLS: give its CA bundle as the
# build secret `ca` (compose: MYRIAD_BUILD_CA); the package installs trust it, the image keeps none.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# -- the dashboard's browser libraries, from the npm registry (pinned by the lockfile) -----------
FROM ${NODE_IMAGE} AS assets
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi \
 && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run --silent vendor

# -- Python packages into a virtual environment --------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /opt/myriad
COPY pyproject.toml README.md ./
COPY agents agents
COPY backend backend
# Editable: the app finds its templates, migrations and examples beside its sources.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/venv/bin/pip install -e .

# -- the image: the venv and the sources, run as an unprivileged user -----------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0
RUN useradd --create-home --uid 10001 myriad
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/myriad
COPY --from=build /opt/myriad /opt/myriad
COPY migrations migrations
COPY examples examples
COPY frontend/templates frontend/templates
COPY frontend/static frontend/static
COPY --from=assets /src/frontend/static/vendor frontend/static/vendor
USER myriad
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["myriad", "serve", "--host", "0.0.0.0", "--port", "8000"]
