# Python SDK (sdk/python) and the cookbook as executable tests (tests/cookbook), run
# against the server and CLI binaries that the root `build` target produces.
# Included by the root Makefile; paths are relative to the repository root.

SDK_VENV ?= $(CURDIR)/sdk/python/.venv
SDK_PYTHON := $(SDK_VENV)/bin/python
SDK_TEST_ENV := SCAIVAULT_SERVER_BIN=$(SERVER_BIN) SCAIVAULT_CLI_BIN=$(CLI_BIN)

.PHONY: sdk-venv test-sdk

# The SDK is installed (not imported from the tree) so the tests see what users get,
# py.typed and packaging included. pip honours PIP_CACHE_DIR.
# moto[server] gives the cookbook's S3 export recipe a real S3 API on loopback
# (moto_server, read back with boto3); it is a test tool, not an SDK dependency.
sdk-venv:
	@test -x $(SDK_PYTHON) || python3 -m venv $(SDK_VENV)
	$(SDK_PYTHON) -m pip install --quiet --disable-pip-version-check "./sdk/python[test]"
	@$(SDK_PYTHON) -c "import moto.server, boto3" 2>/dev/null && test -x $(SDK_VENV)/bin/moto_server || \
	  $(SDK_PYTHON) -m pip install --quiet --disable-pip-version-check "moto[server]>=5,<6"

# Both suites run even when the first fails, so one report shows everything.
test-sdk: build sdk-venv
	@rc=0; \
	$(SDK_TEST_ENV) $(SDK_PYTHON) -m pytest -p no:cacheprovider sdk/python/tests || rc=1; \
	$(SDK_TEST_ENV) $(SDK_PYTHON) -m pytest -p no:cacheprovider tests/cookbook || rc=1; \
	exit $$rc

TEST_PARTS += test-sdk
