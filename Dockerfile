# One image recipe for every layer's server:
#   docker build --build-arg LAYER=l1-connection-pooling -t layers/l1 .
# Stage 1 builds the whole tree on Debian 12; stage 2 keeps only the chosen layer's programs
# (its server, and tools such as l4-reshard) and the runtime libraries, and runs the server as
# an unprivileged user.
FROM debian:bookworm AS build
ARG LAYER=l1-connection-pooling
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      libevent-dev libpq-dev libhiredis-dev libmongoc-dev libbson-dev check libjansson-dev \
      libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERS_WERROR=ON \
 && cmake --build /build -j"$(nproc)" \
 && mkdir /out \
 && find "/build/${LAYER}" -maxdepth 1 -type f -perm -u+x -exec cp {} /out/ \; \
 && mv "/out/${LAYER}" /out/server

FROM debian:bookworm-slim
ARG LAYER=l1-connection-pooling
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-2.1-7 libevent-pthreads-2.1-7 libpq5 \
      libhiredis0.14 libmongoc-1.0-0 libjansson4 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin layers
COPY --from=build /out/ /usr/local/bin/
USER layers
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/server"]
