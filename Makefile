# memo's build and test entry points.
#
#   make test          start the test servers, vet, test with -race, stop them
#   make servers       start the test servers (scripts/servers.sh start)
#   make stop-servers  stop them
#
# GOTESTFLAGS adds flags to the one go test command: make test GOTESTFLAGS=-short

SHELL := /bin/bash
GO ?= go
GOTESTFLAGS ?=
SERVERS := scripts/servers.sh

.PHONY: test servers stop-servers

# The servers are stopped whatever happens (a failed start, a failed vet or
# test, an interrupt); the exit status is go test's, or go vet's when the
# tests passed, or the start's when the servers did not come up.
test:
	@trap 'bash $(SERVERS) stop' EXIT; trap 'exit 130' INT TERM; \
	bash $(SERVERS) start || exit $$?; \
	eval "$$(bash $(SERVERS) env)"; \
	vet=0; $(GO) vet ./... || vet=$$?; \
	tst=0; $(GO) test -race -count=1 $(GOTESTFLAGS) ./... || tst=$$?; \
	if [ $$tst -ne 0 ]; then exit $$tst; fi; exit $$vet

servers:
	@bash $(SERVERS) start

stop-servers:
	@bash $(SERVERS) stop
