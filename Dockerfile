# syntax=docker/dockerfile:1
#
# monogoto-exporter container image.
#
#   docker build -t monogoto-exporter --build-arg REVISION="$(git rev-parse --short=12 HEAD)" .
#   docker run --rm -p 19540:19540 -e MONOGOTO_TOKEN -v monogoto-exporter-state:/var/lib/monogoto-exporter \
#     monogoto-exporter --monogoto.discover
#
# The build stage runs the same `cargo build --release --locked` as a developer
# and CI do. The final image is distroless: the binary, glibc, libgcc, CA
# certificates (for rustls' platform verifier) and nothing else: no shell, no
# package manager. It runs as the distroless `nonroot` user, UID/GID 65532.
#
# The exporter keeps its state (the fleet it last served, the API budget it
# spent) in /var/lib/monogoto-exporter (MONOGOTO_EXPORTER_STORAGE_PATH, the
# environment's --storage.path), a volume owned by UID 65532. Mount a named
# volume (on Kubernetes, a PersistentVolumeClaim) there to keep the state
# across container replacements: the new container serves the fleet at once
# and stays within the API budget. Give every running exporter a volume of its
# own, never a shared one. Without a mount, Docker gives each container an
# anonymous volume, which a replacement by `docker run` does not get.
# Kubernetes ignores VOLUME: there a pod with a read-only root file system and
# nothing mounted at that path cannot write its state, and the exporter exits
# with code 2.

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
    && install -D -m 0755 target/release/monogoto-exporter /out/monogoto-exporter \
    && mkdir -p /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="monogoto-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the connectivity of Monogoto IoT SIM fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/monogoto-exporter /monogoto-exporter
# The state directory, owned by the exporter's user (COPY --chown applies to
# the directory it creates): a fresh named volume mounted here takes its owner.
COPY --from=build --chown=65532:65532 /out/state /var/lib/monogoto-exporter
ENV MONOGOTO_EXPORTER_STORAGE_PATH=/var/lib/monogoto-exporter
VOLUME /var/lib/monogoto-exporter
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 19540
ENTRYPOINT ["/monogoto-exporter"]
