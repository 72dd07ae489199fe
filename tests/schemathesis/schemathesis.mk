# tests/schemathesis: the OpenAPI document checked against the running server with
# schemathesis (every check, all phases including stateful, bounded examples; see
# schemathesis.toml). Included by the root Makefile; paths are relative to the root.
#
#   make test-schemathesis   fails on any failure schemathesis reports

SCHEMATHESIS_VERSION := 4.32.5
# One venv per pinned version, in the build cache (.ci/run sets SCAIVAULT_CACHE).
SCHEMATHESIS_VENV ?= $(or $(SCAIVAULT_CACHE),$(CURDIR)/.cache)/schemathesis-$(SCHEMATHESIS_VERSION)
SCHEMATHESIS_BIN := $(SCHEMATHESIS_VENV)/bin/st

.PHONY: schemathesis-venv test-schemathesis

$(SCHEMATHESIS_BIN):
	python3 -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "schemathesis==$(SCHEMATHESIS_VERSION)"

schemathesis-venv: $(SCHEMATHESIS_BIN)

test-schemathesis: build schemathesis-venv
	@bash tests/schemathesis/run.sh $(SCHEMATHESIS_BIN) $(SERVER_BIN)

TEST_PARTS += test-schemathesis
