# syntax=docker/dockerfile:1
# One image for every drawdown process: `drawdown serve` (the default command) and the roles of
# the distributed mode (`api`, `ingest`, `rater`, `ledger-writer`; see docker-compose.yml).

FROM rust:1-bookworm AS builder
# What rdkafka-sys needs to build librdkafka from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential perl zlib1g-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directories are cache mounts (kept between builds, not in the image),
# so the binary is copied out of them in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p drawdown --bin drawdown \
    && install -m 0755 target/release/drawdown /usr/local/bin/drawdown

FROM debian:bookworm-slim
# curl: the healthchecks probe /readyz with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --create-home --home-dir /var/lib/drawdown drawdown
COPY --from=builder /usr/local/bin/drawdown /usr/local/bin/drawdown
USER drawdown
WORKDIR /var/lib/drawdown
# `drawdown serve` keeps its store and log here; the roles use DRAWDOWN_LOG and DRAWDOWN_STORE.
ENV DRAWDOWN_LISTEN=0.0.0.0:8080 \
    DRAWDOWN_DATA_DIR=/var/lib/drawdown/data
EXPOSE 8080
ENTRYPOINT ["drawdown"]
CMD ["serve"]
