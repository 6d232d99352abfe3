# ctigate in a container (README "Installing as a service"):
#   docker build -t ctigate .
#   docker run -d --name ctigate -p 7700:7700 -v /etc/ctigate:/etc/ctigate:ro ctigate
# The configuration is /etc/ctigate/ctigate.toml inside (mount it); [api] listen must be
# 0.0.0.0:7700 (or the port you publish) to be reachable from outside the container, and
# then the file needs [[user]] entries (README "Securing the gateway": `ctigate token`).

# ---- build: the release binary, from the committed Cargo.lock ----
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# no debug info in the shipped binary
ENV CARGO_PROFILE_RELEASE_DEBUG=false
RUN cargo build --release --locked --bin ctigate \
 && cp target/release/ctigate /ctigate

# ---- run: a small Debian with the binary, as an unprivileged user ----
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ctigate \
 && install -d -o ctigate -g ctigate /var/lib/ctigate
COPY --from=build /ctigate /usr/local/bin/ctigate
USER ctigate
WORKDIR /var/lib/ctigate
EXPOSE 7700
# healthy = the NDJSON port answers ping (CTIGATE_PING_ADDR when [api] listen is another port)
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["ctigate", "ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ctigate"]
CMD ["run"]
