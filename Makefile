PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Members start from compiled bytecode: an editable install compiles nothing, and where
# PYTHONDONTWRITEBYTECODE is set every start would compile hacoord again (0.1 s of 0.6).
COMPILE := $(BIN)/python -m compileall -q -j 0 hacoord >/dev/null

.PHONY: install run test chaos soak explore lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start a local 3-member cluster on 127.0.0.1 (data in ./.hacoord); Ctrl-C stops it.
run: $(STAMP)
	$(COMPILE)
	$(BIN)/hacoord cluster up

## Lint, then run the whole suite (installs chromium for the status page's browser tests and
## promtool for deploy/'s alert rules when run as root).
test: $(STAMP)
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq chromium >/dev/null))) || \
		echo "no chromium (apt-get install chromium): the status page's browser tests are skipped"
	@command -v promtool >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null))) || \
		echo "no promtool (apt-get install prometheus): deploy/'s alert rules are not checked"
	$(BIN)/ruff check hacoord tests bench
	$(COMPILE)
	$(BIN)/pytest -q

## Fixed-seed fault scenarios against real clusters, and the multi-host test in network
## namespaces (root) (about 12 minutes on 2 cores).
chaos: $(STAMP)
	@command -v ip >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get install -y -qq iproute2 >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null))) || \
		echo "no ip (apt-get install iproute2): the multi-host test in network namespaces is skipped"
	$(COMPILE)
	$(BIN)/pytest -q -m chaos tests/chaos tests/netns -s

## Random chaos scenarios until DURATION (e.g. make soak DURATION=2h); stops at the first failure.
DURATION ?= 10m
soak: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m tests.chaos.soak --duration $(DURATION)

## The property tests with fresh random examples, ROUNDS times (make explore ROUNDS=50); stops at
## the first failure and prints it with a blob that replays it. The suite itself uses fixed ones.
ROUNDS ?= 10
explore: $(STAMP)
	for round in $$(seq $(ROUNDS)); do \
		HYPOTHESIS_PROFILE=explore $(BIN)/pytest -q -x --timeout=900 -p no:cacheprovider \
			$$(grep -rl --include='test_*.py' 'from hypothesis' tests | grep -v test_fuzz) \
			|| exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check hacoord tests bench

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

## Throughput and failover of a local cluster (needs wrk, installed as root); JSON and PNG plots
## in bench/results/.
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get install -y -qq wrk >/dev/null) || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	@command -v etcd >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get install -y -qq etcd-server >/dev/null) || \
		echo "etcd not installed (apt-get install etcd-server): hacoord figures only"
	$(COMPILE)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
