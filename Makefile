# ScaiVault developer commands. `make dev` starts a dev server, `make test` runs every test.
# Each part of the tree brings its own make fragment (e2e/, operator/, sdk/python/, bench/,
# tests/schemathesis/) included below.

SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never
CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
SERVER_BIN := $(CARGO_TARGET_DIR)/debug/scaivault-server
CLI_BIN := $(CARGO_TARGET_DIR)/debug/scaivault

.PHONY: help dev build test test-rust lint fmt deps

help:
	@echo "make dev    - start a dev server on 127.0.0.1:8200 (SQLite, auto-initialised)"
	@echo "make test   - install what the tests need, then run every test"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"
	@echo "make crds   - regenerate crds/ from the Rust CRD types"
	@echo "make e2e-start / e2e-stop - a real kube-apiserver + etcd for manual use"

dev:
	$(CARGO) run -p scaivault-server -- dev

build:
	$(CARGO) build --workspace --bins

# System packages the tests use (jq and curl for the cookbook recipes, openssl for the
# Python SDK's TLS test, PostgreSQL for the second storage backend; the Rust tests mint
# their certificates with rcgen).
deps:
	@bash scripts/install-deps.sh

test: deps build test-rust test-parts
	@echo "make test: all suites passed"

# The server's integration suite runs twice: on SQLite (the default), then with every
# server's data on PostgreSQL (one `initdb` per test binary, started by testkit), so both
# backends answer the same API the same way. The store contract runs on both in the first.
test-rust:
	$(CARGO) test --workspace --no-fail-fast
	SCAIVAULT_TEST_STORAGE=postgres $(CARGO) test -p scaivault-server --test '*' --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Fragments add their suites to TEST_PARTS.
TEST_PARTS :=
-include e2e/e2e.mk
-include operator/operator.mk
-include sdk/python/sdk.mk
-include bench/bench.mk
-include tests/schemathesis/schemathesis.mk

.PHONY: test-parts
test-parts: $(TEST_PARTS)
