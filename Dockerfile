# syntax=docker/dockerfile:1
#
# One image with both Courier binaries:
#   /usr/local/bin/courier-provider     the Secrets Store CSI provider (chart default command)
#   /usr/local/bin/courier-driver-shim  the optional CSI driver shim (driver.enabled=true)
#
#   docker build --build-arg COURIER_REVISION=$(git rev-parse --short=12 HEAD) -t ghcr.io/courier/courier:0.1.0 .
#
# COURIER_REVISION becomes courier_build_info{revision}; the context has no .git, so without it the
# revision reads `unknown`.
#
# Builds the workspace packages courier-provider and courier-driver-shim (driver-shim/) with
# Cargo.lock as it is (--locked).
# The final image runs as the distroless `nonroot` user by default. In the cluster the chart
# runs the provider as root (UID 0, no capabilities, not privileged) only so it owns the
# sockets it creates in the host's root-owned providers directory, and the shim privileged,
# because it mounts tmpfs into pod volumes.

FROM rust:1.95-bookworm AS build
ARG COURIER_REVISION=unknown
ENV COURIER_REVISION=${COURIER_REVISION}
WORKDIR /src
# Symbols stripped without touching Cargo.toml: much smaller binaries; panics still print
# their message, backtraces lose function names.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# Only what the build reads; every workspace member's manifest is needed for --locked.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY provider ./provider
COPY driver-shim ./driver-shim
COPY tests ./tests
# protox compiles the protos in Rust (no protoc); aws-lc-sys builds with the image's gcc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p courier-provider -p courier-driver-shim \
 && install -D -m 0755 target/release/courier-provider /out/courier-provider \
 && install -D -m 0755 target/release/courier-driver-shim /out/courier-driver-shim

# glibc, libgcc and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="courier" \
      org.opencontainers.image.description="Secrets Store CSI provider for Vault, OpenBao and AWS, as the pod's own identity; with an optional CSI driver shim" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/courier-provider /out/courier-driver-shim /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/courier-provider"]
