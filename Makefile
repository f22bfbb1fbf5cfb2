# memo's build and test entry points.
#
#   make test          start the test servers, vet, test with -race, stop them;
#                      every module: the root and otelmemo (a module of its own,
#                      so that OpenTelemetry reaches only those who import it)
#   make servers       start the test servers (scripts/servers.sh start)
#   make stop-servers  stop them
#   make fuzz          run every fuzz target for FUZZTIME each (no servers;
#                      a count of runs, not a duration: Go 1.26's fuzz coordinator
#                      can fail a duration-bounded run at its deadline, go.dev/issue/75804)
#
# GOTESTFLAGS adds flags to each module's go test command: make test GOTESTFLAGS=-short
# make test runs make fuzz once the tests have passed.

SHELL := /bin/bash
GO ?= go
GOTESTFLAGS ?=
FUZZTIME ?= 200000x
SERVERS := scripts/servers.sh
# The modules make test vets and tests, each from its own directory.
MODULES := . otelmemo

.PHONY: test servers stop-servers fuzz

# The servers are stopped whatever happens (a failed start, a failed vet or
# test, an interrupt); every module is vetted and tested even when an
# earlier one failed; the exit status is the first failed go test's, or
# the first failed go vet's when the tests passed, or the start's when the
# servers did not come up.
test:
	@trap 'bash $(SERVERS) stop' EXIT; trap 'exit 130' INT TERM; \
	bash $(SERVERS) start || exit $$?; \
	eval "$$(bash $(SERVERS) env)"; \
	vet=0; for mod in $(MODULES); do \
		(cd $$mod && $(GO) vet ./...) || { r=$$?; [ $$vet -ne 0 ] || vet=$$r; }; \
	done; \
	tst=0; for mod in $(MODULES); do \
		(cd $$mod && $(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...) || { r=$$?; [ $$tst -ne 0 ] || tst=$$r; }; \
	done; \
	if [ $$tst -ne 0 ]; then exit $$tst; fi; exit $$vet
	@$(MAKE) --no-print-directory fuzz

servers:
	@bash $(SERVERS) start

stop-servers:
	@bash $(SERVERS) stop

# Every fuzz target of every package (go test -list '^Fuzz'), each run
# alone for FUZZTIME. Their seed corpora are the f.Add calls and
# testdata/fuzz/<Target>/ in the package; an input that fails is written
# there, to be committed with the fix.
fuzz:
	@set -eo pipefail; \
	pkgs=$$($(GO) list ./...); \
	for pkg in $$pkgs; do \
		names=$$($(GO) test -list '^Fuzz' "$$pkg") || exit $$?; \
		for name in $$(grep '^Fuzz' <<<"$$names"); do \
			echo "fuzz: $$pkg $$name for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done
