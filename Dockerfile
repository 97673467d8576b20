# The registry as a container: non-root, data in /data, configured by REGISTRY_* environment.
# BASE is a build argument so the image can be built from a locally made Python base as well.
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
RUN python3 -m venv /opt/registry && /opt/registry/bin/pip install --no-cache-dir .

FROM ${BASE}
COPY --from=build /opt/registry /opt/registry
RUN useradd --system --uid 10001 --home-dir /data registry && mkdir -p /data && chown registry /data
USER registry
ENV PATH=/opt/registry/bin:$PATH REGISTRY_DATA_DIR=/data REGISTRY_LISTEN=:5000
VOLUME /data
EXPOSE 5000
ENTRYPOINT ["registry", "serve"]
