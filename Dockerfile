# syntax=docker/dockerfile:1
#
# monogoto-exporter container image.
#
#   docker build -t monogoto-exporter --build-arg REVISION="$(git rev-parse --short=12 HEAD)" .
#   docker run --rm -p 19540:19540 -e MONOGOTO_TOKEN monogoto-exporter --monogoto.discover
#
# The build stage runs the same `cargo build --release --locked` as a developer
# and CI do. The final image is distroless: the binary, glibc, libgcc, CA
# certificates (for rustls' platform verifier) and nothing else: no shell, no
# package manager. It runs as the distroless `nonroot` user, UID/GID 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# .git is not in the build context: pass the revision for monogoto_exporter_build_info.
ARG REVISION=unknown
ENV MONOGOTO_EXPORTER_REVISION=${REVISION} \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/monogoto-exporter /out/monogoto-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="monogoto-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the connectivity of Monogoto IoT SIM fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/monogoto-exporter /monogoto-exporter
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 19540
ENTRYPOINT ["/monogoto-exporter"]
