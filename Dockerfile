# The scaler's image: a static-ish Rust binary on distroless (glibc, no shell), non-root.
#   docker build -t keda-llm-scaler .
# tests/deploy.rs runs the build command below and checks ENTRYPOINT and CMD against the
# binary's --help, so keep them in the exec form on one line each.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin keda-llm-scaler

# cc: glibc and libgcc, which the TLS stack (aws-lc) links against; nonroot: uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/keda-llm-scaler /usr/local/bin/keda-llm-scaler
USER 65532:65532
EXPOSE 6000 8080
ENTRYPOINT ["/usr/local/bin/keda-llm-scaler"]
CMD ["serve", "--config=/etc/keda-llm-scaler/config.yaml", "--grpc-addr=0.0.0.0:6000", "--http-addr=0.0.0.0:8080"]
