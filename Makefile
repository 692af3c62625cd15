# lb's build, run, test and lint targets. See README.md.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS     := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
H2SPEC      := github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
GOBIN_DIR   := $(shell $(GO) env GOPATH)/bin
FUZZTIME    ?= 60s

comma := ,

.PHONY: all build run test tools lint bench bench-http bench-core bench-reload fuzz clean

all: build

## build: the static lb binary, ./lb
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o lb .

bin/demo: $(wildcard internal/demo/*.go)
	$(GO) build -o bin/demo ./internal/demo

## run: lb on config.example.toml in front of demo backends on 127.0.0.1:9001-9004
run: build bin/demo
	@pids=""; trap 'kill $$pids 2>/dev/null; wait' EXIT INT TERM; \
	./bin/demo -name s1 -listen 127.0.0.1:9001 & pids="$$pids $$!"; \
	./bin/demo -name s2 -listen 127.0.0.1:9002 & pids="$$pids $$!"; \
	./bin/demo -name spare -listen 127.0.0.1:9003 & pids="$$pids $$!"; \
	./bin/demo -name api1 -listen 127.0.0.1:9004 & pids="$$pids $$!"; \
	sleep 1; \
	echo "lb listens on 127.0.0.1:8080 (HTTP) and :8081 (TCP); try: curl -i http://127.0.0.1:8080/ ; stats page: http://127.0.0.1:8404/ ; admin: ./lb admin help  (Ctrl-C stops)"; \
	./lb -f config.example.toml

## test: unit and integration tests, with the race detector when a C compiler is there for it (cgo)
test: tools
	@race=-race; \
	if [ "$$($(GO) env CGO_ENABLED)" != 1 ] || ! command -v "$$($(GO) env CC)" >/dev/null 2>&1; then \
		race=; echo "make test: cgo is off or its C compiler ($$($(GO) env CC)) is missing, so the race detector is off: install gcc (apt-get install gcc) to turn it on"; \
	fi; \
	echo "$(GO) test $$race -count=1 -timeout 9m ./..."; \
	$(GO) test $$race -count=1 -timeout 9m ./...

## tools: the peers the tests run: h2spec (Go module proxy); from Debian's packages nghttp (nghttp2-client), strace, curl, HAProxy, ip (iproute2), systemd-analyze (systemd), promtool (prometheus), chromium
tools:
	@command -v h2spec >/dev/null 2>&1 || test -x $(GOBIN_DIR)/h2spec || $(GO) install $(H2SPEC)
	@for p in nghttp:nghttp2-client strace:strace curl:curl haproxy:haproxy ip:iproute2 systemd-analyze:systemd promtool:prometheus chromium:chromium; do \
		cmd=$${p%%:*}; pkg=$${p#*:}; \
		command -v $$cmd >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $$pkg >/dev/null) || echo "make tools: could not install $$cmd (Debian package $$pkg): the tests that need it will fail"; \
	done

## lint: gofmt, go vet and staticcheck (pinned)
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: benchmarks (picks, data path), then bench-http and bench-core
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@$(MAKE) --no-print-directory bench-http
	@$(MAKE) --no-print-directory bench-core

## bench-http: HTTP keep-alive req/s and p99 through lb, HAProxy (mode http) and direct, side by side (CLIENTS, DURATION, ROUNDS, BENCH_FLAGS)
bench-http: build
	@command -v haproxy >/dev/null 2>&1 || (apt-get update && apt-get install -y haproxy) || echo "bench-http: could not install HAProxy; measuring lb and direct only"
	$(GO) run ./internal/bench/http -lb ./lb -clients $(or $(CLIENTS),32) -duration $(or $(DURATION),10s) -rounds $(or $(ROUNDS),1) $(BENCH_FLAGS)

## bench-core: lb (GOMAXPROCS=1) and HAProxy (nbthread 1) pinned to the same CPU, load on the other: CPU per request, req/s, CPU per GB, RSS and fds per idle connection, HTTPS (h2, new TLS connections, download) (ROUNDS, DURATION, CONNS, BULK_GB, LB, BENCH_FLAGS)
bench-core: $(if $(LB),,build)
	@(command -v haproxy && command -v wrk && command -v h2load) >/dev/null 2>&1 || (apt-get update && apt-get install -y haproxy wrk nghttp2-client) || echo "bench-core: could not install haproxy, wrk and h2load (Debian packages); the run says what is missing and fails"
	$(GO) run ./internal/bench/core -lb $(or $(LB),./lb) -rounds $(or $(ROUNDS),3) -duration $(or $(DURATION),10s) -conns $(or $(CONNS),8000) -bulk-gb $(or $(BULK_GB),4) $(BENCH_FLAGS)

## bench-reload: reload storms on a fixed cadence, lb (plain -sf, -x, no admin socket, migrate=1) vs haproxy -D -sf on the same load (INTERVALS, STORM, CLIENTS, KEEPALIVE, STREAMS, BENCH_FLAGS)
bench-reload: build
	@command -v haproxy >/dev/null 2>&1 || (apt-get update && apt-get install -y haproxy) || echo "bench-reload: could not install HAProxy; measuring lb alone"
	$(GO) run ./internal/bench/reload -lb ./lb -intervals $(or $(INTERVALS),200ms$(comma)100ms) -storm $(or $(STORM),20s) -clients $(or $(CLIENTS),16) -keepalive $(or $(KEEPALIVE),8) -streams $(or $(STREAMS),2) $(BENCH_FLAGS)

## fuzz: fuzz the configuration loader, the HTTP parser, the rule and condition compilers, the PROXY protocol parser and the HTTP/2 to HTTP/1.1 translation, each for FUZZTIME
FUZZ_TARGETS := config:FuzzParse h1:FuzzReadRequest h1:FuzzReadResponse h1:FuzzChunkedReader \
	rules:FuzzCompileRoute rules:FuzzCompileHeaderRule rules:FuzzTemplate rules:FuzzCompileExpr rules:FuzzCompileCond \
	proxyproto:FuzzParse tlshello:FuzzParse ipbytes:FuzzParseIPv6 httpproxy:FuzzH2ToH1
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; echo "fuzz $$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	done

clean:
	rm -rf lb bin
