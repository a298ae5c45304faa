# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
GO ?= go
BIN := bin/relay
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/outbox-relay/relay/internal/buildinfo.Version=$(VERSION)

.PHONY: help build run test test-unit lint bench tools-check fmt

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

tools-check:
	@command -v $(GO) >/dev/null || { echo "missing: Go 1.26 or newer (https://go.dev/dl/); put 'go' on PATH and retry" >&2; exit 1; }
	@$(GO) mod download

build: tools-check ## build bin/relay
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/relay

run: build ## local PostgreSQL + ClickHouse + API + relay with demo traffic (Ctrl-C stops it all)
	scripts/run.sh $(BIN)

test: tools-check ## unit + integration tests against private PostgreSQL 15 and 17 and ClickHouse
	scripts/test.sh

test-unit: tools-check ## unit tests only (no servers)
	$(GO) test -race -short ./...

lint: tools-check ## gofmt, go vet (and golangci-lint when installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@if command -v golangci-lint >/dev/null; then golangci-lint run; else echo "golangci-lint not installed: skipped"; fi

bench: build ## benchmarks against private servers (BENCH_QUICK=1 for a short run)
	scripts/bench.sh
