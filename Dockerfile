# raftmq: one image for every role. The entrypoint is the `raftmq` binary:
#   docker run raftmq namesrv --listen 0.0.0.0:9876 --http-listen 0.0.0.0:8080
#   docker run -v raftmq-n1:/var/lib/raftmq raftmq broker --config /etc/raftmq/broker.toml
#   docker run raftmq console --listen 0.0.0.0:8080 --cluster main=NS:9876
# Every role serves /healthz (and /readyz) on the HTTP port; the image's HEALTHCHECK asks
# 8080, the port deploy/compose and deploy/kubernetes give it. Data: /var/lib/raftmq.
# Checked in CI with hadolint (scripts/deploy-check.sh); no container engine runs here.

# The builder: Rust 1.95 (the workspace's rust-version) and the one system
# package the build needs (libclang-dev: RocksDB's bindgen), as scripts/prereqs.sh has it.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev=1:14.0-55.7~deb12u1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin raftmq \
    && install -m 0755 target/release/raftmq /usr/local/bin/raftmq

# The runtime: the binary, CA certificates (for TLS to peers named by the CA), tini as
# PID 1 (forwards SIGTERM, so a broker hands its leadership over before it stops), and a
# non-root user owning the data volume.
FROM debian:12.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates=20230311+deb12u1 tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/raftmq --create-home raftmq
COPY --from=build /usr/local/bin/raftmq /usr/local/bin/raftmq
USER 10001:10001
WORKDIR /var/lib/raftmq
VOLUME ["/var/lib/raftmq"]
# NameServer, broker client port, broker Raft port, HTTP (metrics, health, console).
EXPOSE 9876 10911 10912 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/raftmq", "probe", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/raftmq"]
CMD ["--help"]
