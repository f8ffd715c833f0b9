# challenge-v3: `make run` starts the whole system locally, `make test` is what CI runs.

GO       ?= go
BIN      ?= ./bin
# Each fuzz target's budget in `make test` / `make fuzz`: a count of
# executions, not a duration. With a duration, Go 1.26's fuzz coordinator can
# report its own -fuzztime deadline as a failure ("context deadline exceeded",
# no crasher written; Go issue 75804, fixed in 1.27); a count has no deadline
# to race. 20000x takes 1-10 s a target here.
FUZZTIME ?= 20000x
# -race is on: measured cost is acceptable on 2 cores (see docs/decisions.md).
TESTFLAGS ?= -race -count=1 -timeout 10m

SHELL       := bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: test vet unit fuzz run build migrate bench bench-go clean

## test: vet, the whole suite against real NATS and PostgreSQL, then short fuzz runs
test: vet unit fuzz

vet:
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.devstack/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test $(TESTFLAGS) ./...

## fuzz: run every Fuzz* target of the module for FUZZTIME each (a count,
## e.g. 20000x, or a duration, e.g. 30s, for a longer local run). Targets are
## discovered with `go test -list`, so new ones are picked up automatically.
fuzz:
	@targets=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names[n++] = $$1; next } /^ok/ { for (i = 0; i < n; i++) print $$2 "," names[i]; n = 0 }'); \
	if [ -z "$$targets" ]; then echo "fuzz: no Fuzz targets"; exit 0; fi; \
	for t in $$targets; do \
		pkg=$${t%%,*}; name=$${t#*,}; \
		echo "fuzz: $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

## run: embedded NATS + local PostgreSQL under ./.devstack + API + worker; Ctrl-C stops all.
## Built then exec'd rather than `go run`: go run exits 1 after Ctrl-C even on a clean stop.
run:
	$(GO) build -o $(BIN)/dev ./cmd/dev
	exec $(BIN)/dev

## build: the two deployable binaries into ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/api ./cmd/worker

## migrate: apply the database migrations to DATABASE_URL. When it is unset and
## the dev stack's state exists, to the dev stack's database while `make run`
## runs: its PostgreSQL writes the port it listens on to line 4 of
## postmaster.pid (a documented PostgreSQL file), and the rest of the DSN is
## fixed by internal/devstack (role postgres, trust on 127.0.0.1, database
## telemetry). Decided here, not in `worker migrate`: a deployed binary never
## guesses its database.
DEVSTACK ?= ./.devstack
migrate:
	@if [ -z "$${DATABASE_URL:-}" ] && [ -d "$(DEVSTACK)" ]; then \
		pidfile="$(DEVSTACK)/pg/data/postmaster.pid"; \
		port=$$(sed -n 4p "$$pidfile" 2>/dev/null || true); \
		if ! [[ "$$port" =~ ^[0-9]+$$ ]]; then \
			echo "make migrate: DATABASE_URL is unset and the dev stack's PostgreSQL is not running ($$pidfile is missing); start it with make run, or set DATABASE_URL" >&2; \
			exit 2; \
		fi; \
		export DATABASE_URL="postgres://postgres@127.0.0.1:$$port/telemetry?sslmode=disable"; \
		echo "make migrate: DATABASE_URL is unset; using the dev stack's database $$DATABASE_URL" >&2; \
	fi; \
	$(GO) run ./cmd/worker migrate

## bench: every ingest stage against its baseline (bare server, minimal durable
## server, straightforward implementation, raw COPY), one table of ratios, about
## 5 minutes; see docs/performance.md. BENCHFLAGS passes flags, e.g. -only api.
BENCHFLAGS ?=
bench:
	$(GO) run ./cmd/bench $(BENCHFLAGS)

## soak: the memory section of make bench for SOAK (5 minutes): the api, worker
## and nats-server binaries as processes, RSS sampled every 5 s at half the
## sustained rate, its trend over the second half (flat: ≤ 1 MiB/min), and the
## NATS server's dedupe-window cost; see docs/performance.md.
SOAK ?= 5m
.PHONY: soak
soak:
	$(GO) run ./cmd/bench -only memory -soak $(SOAK)

## bench-go: the Go micro-benchmarks of every package (decoders, inserts, …)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## clean: remove the dev stack's state (NATS store, PostgreSQL cluster, keys) and ./bin
clean:
	@# As root from a directory postgres cannot enter, .devstack/pg links to
	@# the cluster under /var/lib/challenge-v3: remove what it points at too.
	if [ -L .devstack/pg ]; then rm -rf "$$(readlink .devstack/pg)"; fi
	rm -rf ./.devstack $(BIN)
