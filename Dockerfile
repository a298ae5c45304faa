# syntax=docker/dockerfile:1

# Build stage: a static relay binary (CGO off, so it runs on distroless/static).
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Module downloads get their own layer, rebuilt only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download && go mod verify

COPY . .

ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/outbox-relay/relay/internal/buildinfo.Version=${VERSION}" \
      -o /out/relay ./cmd/relay

# Final stage: no shell, no package manager, runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /relay
USER nonroot:nonroot
# 9090: admin (/healthz, /readyz, /metrics) of `relay run`; 8080: `relay api`.
EXPOSE 9090 8080
ENTRYPOINT ["/relay"]
CMD ["run"]
