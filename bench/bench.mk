# Benchmarks side by side with OpenBao (see bench/README.md). Included by the root Makefile,
# which defines CARGO, CARGO_TARGET_DIR, SERVER_BIN (debug) and the `build` target.
#   make bench             full run: release build, both servers, 3 repetitions -> bench/results/
#   make test-bench-smoke  seconds-long end-to-end check of the harness (debug build, no speed checks)
#   make bench-agent       the agent next to bao agent: RSS, CPU, write-to-file latency -> bench/results/agent.json
#   make bench-admission   pod creates through the real apiserver with and without the injector -> admission.json
# Every BENCH_* / SCAIVAULT_* environment variable of bench/README.md passes through to `make bench`.

BENCH_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SCAIVAULT_RELEASE_BIN := $(CARGO_TARGET_DIR)/release/scaivault-server

.PHONY: bench bench-deps test-bench-smoke bench-operator bench-stream bench-webhooks bench-agent bench-admission \
	test-bench-agent-smoke

bench-deps:
	@bash $(BENCH_DIR)/install-deps.sh

bench: bench-deps
	$(CARGO) build --release -p scaivault-server
	SCAIVAULT_BIN=$(SCAIVAULT_RELEASE_BIN) SCAIVAULT_PROFILE=release bash $(BENCH_DIR)/run.sh

# One 1-second run per workload, one repetition, 200 secrets: checks that the harness
# still starts both servers, loads data, drives wrk and writes a table. Never asserts on speed.
test-bench-smoke: build bench-deps
	SCAIVAULT_BIN=$(SERVER_BIN) SCAIVAULT_PROFILE=debug BENCH_LABEL=smoke \
	BENCH_DURATION=1 BENCH_WARMUP=0 BENCH_REPS=1 BENCH_COLDSTART_REPS=1 \
	BENCH_PREFIXES=2 BENCH_PER_PREFIX=100 BENCH_IDLE_SECONDS=1 BENCH_CONNECTIONS=16 \
	BENCH_WORKLOADS=read,write,mix,list BENCH_OUT=$(abspath $(BENCH_DIR))/.work/smoke \
	bash $(BENCH_DIR)/run.sh

TEST_PARTS += test-bench-smoke

# The operator at scale (bench/README.md, "Operator at scale"): release builds, the real
# kube-apiserver of e2e/, VaultSecrets across 10 namespaces; cold sync, steady-state
# apiserver requests, RSS, restart. Never part of `make test`.
#   make bench-operator BENCH_OPERATOR_SIZES="1000 10000"
BENCH_OPERATOR_SIZES ?= 1000 10000
bench-operator: e2e-env bench-deps
	$(CARGO) build --release -p scaivault-server
	BENCH_OPERATOR_SIZES="$(BENCH_OPERATOR_SIZES)" CARGO="$(CARGO)" bash $(BENCH_DIR)/operator/run.sh

# The event stream at 1,000 subscribers (bench/README.md, "The event stream"): write to
# receipt p50/p99 and server RSS. Never part of `make test`.
bench-stream:
	$(CARGO) build --release -p scaivault-server
	SCAIVAULT_BIN=$(SCAIVAULT_RELEASE_BIN) python3 $(BENCH_DIR)/stream/stream.py

# Webhook delivery to 20 webhooks (bench/README.md, "Webhooks"): write to receipt p50/p99,
# a burst's deliveries per second, signatures checked, server RSS. Never part of `make test`.
bench-webhooks:
	$(CARGO) build --release -p scaivault-server
	SCAIVAULT_BIN=$(SCAIVAULT_RELEASE_BIN) python3 $(BENCH_DIR)/webhooks/webhooks.py

# The agent next to `bao agent` (bench/README.md, "The agent"): both vaults as `make bench`
# starts them, the real kube-apiserver of e2e/ for the agent's Kubernetes login; the same
# secrets rendered into files by each; RSS, CPU idle and while updating, write-to-file
# p50/p99. Never part of `make test`. AGENT_* variables pass through (bench/agent/agent.py).
bench-agent: e2e-env bench-deps
	$(CARGO) build --release -p scaivault-server -p scaivault-agent
	SCAIVAULT_BIN=$(SCAIVAULT_RELEASE_BIN) SCAIVAULT_AGENT_BIN=$(CARGO_TARGET_DIR)/release/scaivault-agent \
	python3 $(BENCH_DIR)/agent/agent.py

# ~15 s check that the agent harness still starts both vaults and both agents, sees every
# update in both agents' files and writes its JSON (debug builds, 2 secrets, 3 updates; the
# agent logs in through the real kube-apiserver of e2e/). Never asserts on speed.
test-bench-agent-smoke: build bench-deps e2e-env
	SCAIVAULT_PROFILE=debug SCAIVAULT_BIN=$(SERVER_BIN) \
	SCAIVAULT_AGENT_BIN=$(CARGO_TARGET_DIR)/debug/scaivault-agent \
	AGENT_SECRETS=2 AGENT_UPDATES=3 AGENT_IDLE_SECONDS=1 AGENT_SETTLE_SECONDS=0.5 AGENT_UPDATE_GAP=0.2 \
	AGENT_OUT=$(abspath $(BENCH_DIR))/.work/smoke/agent.json python3 $(BENCH_DIR)/agent/agent.py

TEST_PARTS += test-bench-agent-smoke

# Admission latency through the real kube-apiserver (bench/README.md, "Admission"): pod
# creates with and without the injector's webhook. Never part of `make test`.
bench-admission: e2e-env bench-deps
	$(CARGO) build --release -p scaivault-injector
	SCAIVAULT_INJECTOR_BIN=$(CARGO_TARGET_DIR)/release/scaivault-injector python3 $(BENCH_DIR)/agent/admission.py
