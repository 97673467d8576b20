# The registry as a container: non-root (uid 10001), data in the /data volume, configured by
# REGISTRY_* environment (docs/configuration.md), health checked on /healthz.
#
#   docker build -t registry .
#   docker run -d -p 127.0.0.1:5000:5000 -v registry-data:/data \
#       -e REGISTRY_AUTH_ANONYMOUS_PUSH_NETWORKS=127.0.0.0/8,172.17.0.1/32 registry
#   docker run --rm -v registry-data:/data registry db upgrade       # any `registry` command
#
# Pushes through Docker's port forwarding arrive from the bridge's address (172.17.0.1 on the default
# bridge), not loopback, so without that variable (or auth.mode basic/token) every push is refused;
# docs/deployment.md, "Who may push", says how to find yours.
#
# BASE is any Debian-like image with python3 (3.11+) and its venv module: the usual Python image,
# or one made from Debian's archive where Docker Hub is out of reach (scripts/debian-base-image).
# Offline builds: put wheels of the dependencies (and setuptools) in ./wheelhouse/ and pass
# --build-arg PIP_NO_INDEX=1. Written for the legacy builder as well as BuildKit.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG PIP_NO_INDEX
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=/wheels
RUN python3 -m venv /opt/registry
# README.md makes the copy valid when there is no wheelhouse/ (a pattern alone may match nothing);
# pip ignores it in /wheels.
COPY README.md wheelhous[e] /wheels/
WORKDIR /src
# The dependencies first, from pyproject.toml alone: this layer survives changes to the code. With the s3,
# postgres and ldap extras: the image is how many run the registry on S3 or PostgreSQL, or with directory
# users. Not the runtime extra: the container runtime needs root and the host's namespaces, which this
# non-root container does not have.
COPY pyproject.toml ./
RUN /opt/registry/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print("\n".join(p["dependencies"] + extras["s3"] + extras["postgres"] + extras["ldap"]))' > requirements.txt \
    && /opt/registry/bin/pip install -r requirements.txt
COPY README.md ./
COPY registry ./registry
RUN /opt/registry/bin/pip install --no-deps . \
    && /opt/registry/bin/pip uninstall -y -q pip setuptools

FROM ${BASE}
COPY --from=build /opt/registry /opt/registry
RUN groupadd --system --gid 10001 registry \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin registry \
    && mkdir -p /data && chown 10001:10001 /data
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENV PATH=/opt/registry/bin:$PATH PYTHONUNBUFFERED=1 REGISTRY_DATA_DIR=/data REGISTRY_LISTEN=:5000
WORKDIR /data
VOLUME /data
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/registry/bin/python", "-m", "registry.healthcheck"]
ENTRYPOINT ["registry"]
CMD ["serve"]
