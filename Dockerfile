# syntax=docker/dockerfile:1
#
# One Dockerfile, two images: pick the binary with the build target.
#   docker build --target api    -t challenge-v3-api .
#   docker build --target worker -t challenge-v3-worker .
# Go 1.26 (not the seed's 1.24): the current nats.go, pgx and AWS SDK need it.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/api ./cmd/worker

# Alpine rather than distroless: its busybox wget lets compose probe the
# admin ports (/healthz, /readyz) without a health-check mode in the binaries.
FROM alpine:3.22 AS runtime
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 app \
 && adduser -S -D -H -u 10001 -G app app
# Numeric, so orchestrators that require runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /home/app

FROM runtime AS worker
COPY --from=build /out/worker /usr/local/bin/worker
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/worker"]

# api last: a plain `docker build .` gives the API image.
FROM runtime AS api
COPY --from=build /out/api /usr/local/bin/api
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/api"]
