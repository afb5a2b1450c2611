# syntax=docker/dockerfile:1
# wasmon: the agent binary plus the first-party plugins.
#
#   docker build -t wasmon .
#   docker run -p 9930:9930 -v wasmon-data:/var/lib/wasmon wasmon
#
# Build stage: upstream Rust with the wasm32-wasip2 target, so `cargo xtask
# plugins` takes its direct route (no Debian rustc-web needed here).
FROM docker.io/library/rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wasmon \
 && cargo xtask plugins \
 && strip target/release/wasmon

# Runtime: glibc + libgcc only (jemalloc is linked statically). distroless
# has no shell; the nonroot user owns /var/lib/wasmon.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wasmon /usr/local/bin/wasmon
# First-party plugins, copied into the plugins dir on first start of a
# fresh volume (see the Kubernetes init container) or used as-is here.
COPY --from=build --chown=nonroot:nonroot /src/target/plugins/ /usr/lib/wasmon/plugins/
COPY --from=build --chown=nonroot:nonroot /src/target/plugins/ /var/lib/wasmon/plugins/
COPY deploy/wasmon.toml /etc/wasmon/wasmon.toml
USER nonroot
VOLUME ["/var/lib/wasmon"]
EXPOSE 9930
ENTRYPOINT ["/usr/local/bin/wasmon"]
CMD ["run", "--config", "/etc/wasmon/wasmon.toml"]
