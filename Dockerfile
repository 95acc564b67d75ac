# kinesis-writer: a release build of the one binary on a distroless, non-root runtime.
#
#   docker build -t kinesis-writer .
#   docker run --rm -p 8080:8080 -e AWS_REGION=eu-west-1 kinesis-writer
#
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on 20.10) for the cache
# mounts below. There is deliberately no `# syntax=docker/dockerfile:1` line: the built-in
# Dockerfile frontend has everything used here (RUN --mount since Docker 20.10), and the line made
# every build fetch the frontend image from Docker Hub, which fails where only a mirror of the base
# images (or no registry) can be reached. Built and run by `make image-test` (docs/deployment.md, "Container image").

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------------
# Bookworm on purpose: the binary links against glibc, and the runtime image below is Debian 12
# (bookworm) too, so the glibc it was built against is the one it runs with.
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# The allocator's -sys crate (tikv-jemalloc-sys) runs jemalloc's configure and `make`; the slim
# image has gcc and libc6-dev but no make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies are cached by BuildKit cache mounts (registry, git checkouts, target/) rather than by
# a separate dependency layer (cargo-chef): the same effect with no extra tool to install. The
# binary is copied out of target/ in the same step because a cache mount is not part of the image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin kinesis-writer \
 && cp target/release/kinesis-writer /usr/local/bin/kinesis-writer

# Smoke test: the binary starts and answers without AWS (docs/deployment.md, "AWS setup").
RUN kinesis-writer --version && kinesis-writer --help > /dev/null

# ---- runtime ----------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates, no shell, no package manager. In a real registry
# pin it by digest (gcr.io/distroless/cc-debian12:nonroot@sha256:...); the digest could not be
# looked up from where this file was written.
FROM gcr.io/distroless/cc-debian12:nonroot

WORKDIR /app
COPY --from=builder /usr/local/bin/kinesis-writer /app/kinesis-writer
# base.yaml + production.yaml are what the container reads; local.yaml is there for the
# docker-compose one-shot `create-streams` (APP_ENVIRONMENT=local).
COPY config/ /app/config/

# production.yaml: listen on 0.0.0.0:8080, JSON logs. AWS_REGION (or APP_KINESIS__REGION) must be
# given at run time: without a region the service refuses to start.
ENV APP_ENVIRONMENT=production \
    APP_CONFIG_DIR=/app/config

EXPOSE 8080
# The image's `nonroot` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 65532:65532

# No HEALTHCHECK: distroless has no shell and no curl to run one. Health checks belong to the
# orchestrator: readiness GET /health/ready, liveness GET /health/live (both on port 8080).
# SIGTERM (docker stop, Kubernetes) drains in-flight requests for up to
# server.shutdown_drain_timeout_ms (30 s) and exits 0: give the container a stop grace period
# longer than that (docker's default is 10 s).
ENTRYPOINT ["/app/kinesis-writer"]
