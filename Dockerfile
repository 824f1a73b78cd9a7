# syntax=docker/dockerfile:1
#
# One image for both TrafegoDNS services; the command chooses which runs:
#
#   docker build -t trafegodns:dev .
#   docker run --rm -e DNS_ZONE=example.com -v cache-data:/data -p 127.0.0.1:50051:50051 trafegodns:dev
#   docker run --rm -e CACHE_SERVICE_URL=http://cache:50051 -v tracking-data:/data \
#     -e HEALTHCHECK_ADDR=http://127.0.0.1:50052 trafegodns:dev tracking-service
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.
# Builder and runtime are both Debian 12 (bookworm), so the binaries find the
# glibc they were linked against; bump the two tags together.

############################ build ############################
FROM rust:1.95.0-slim-bookworm AS builder
# libpq-dev: diesel links libpq for the PostgreSQL backend (pkg-config finds it).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libpq-dev pkg-config; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
# libpq: the PostgreSQL client library diesel's postgres backend links.
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# The registry and the target directory live in cache mounts (kept between
# builds, never in a layer), so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p cache-service -p tracking-service -p trafego-common \
        --bin cache-service --bin tracking-service --bin trafego-healthcheck \
 && mkdir -p /out \
 && cp target/release/cache-service target/release/tracking-service \
       target/release/trafego-healthcheck /out/

############################ run ##############################
FROM debian:12.13-slim AS runtime
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates libpq5; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 trafego; \
    useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin trafego; \
    mkdir -p /data; \
    chown 10001:10001 /data; \
    chmod 0750 /data
COPY --from=builder /out/ /usr/local/bin/

# Everything the services write lives under /data (databases, the zone file
# and its temp files); the root filesystem can be mounted read-only. With the
# working directory at /, the zone file's default ./data/<zone>.zone is
# /data/<zone>.zone. A new named volume mounted at /data takes its owner
# (10001) from the image.
WORKDIR /
VOLUME ["/data"]

# Containers listen on all interfaces; each service reads only its own
# variables, so one set serves both. Set HEALTHCHECK_ADDR to
# http://127.0.0.1:50052 when running tracking-service.
ENV CACHE_LISTEN_ADDR=0.0.0.0:50051 \
    TRACKING_LISTEN_ADDR=0.0.0.0:50052 \
    CACHE_DB_PATH=/data/cache.db \
    TRACKING_DB_PATH=/data/tracking.db \
    HEALTHCHECK_ADDR=http://127.0.0.1:50051

# gRPC of cache-service, gRPC of tracking-service, Prometheus (METRICS_ADDR).
EXPOSE 50051 50052 9090

# grpc.health.v1 for the whole server (""); exits 0 only when SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["trafego-healthcheck", "--timeout", "3s"]

USER 10001:10001
# SIGTERM (docker stop) drains in-flight calls within SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
CMD ["cache-service"]
