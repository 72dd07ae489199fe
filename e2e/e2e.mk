# e2e/e2e.mk: the Kubernetes test environment (real kube-apiserver + etcd built
# from Go modules, see e2e/README.md). Included by the root Makefile; paths are
# relative to the repository root.
#
#   make e2e-env         build kube-apiserver, etcd, testenv-tool (no-op when unchanged)
#   make test-e2e-env    smoke test of the environment (part of `make test`)
#   make e2e-start       start an environment in $(E2E_ENV_DIR) for manual use
#   make e2e-stop        stop it
#   make test-e2e-env-controllers
#                        the smoke test with kube-controller-manager as well (not in
#                        `make test`: it adds ~4 min to a cold build). E2E_WITH_CONTROLLERS=1
#                        makes e2e-env/e2e-start build and run it too.

#   make test-e2e-node   smoke test of the test node: containerd + runc + kubelet, pods
#                        that really run (part of `make test`; needs root)
#
# Every build includes the kubelet of the test node (E2E_WITH_NODE=1), so that the
# suites that start an environment, with a node or without, share one set of binaries.
export E2E_WITH_NODE ?= 1

# Where the binaries go; CI points this at its cache outside the clone.
E2E_BIN_DIR ?= $(CURDIR)/e2e/.bin
export E2E_BIN_DIR
E2E_ENV_DIR ?= $(CURDIR)/e2e/.env

.PHONY: e2e-env test-e2e-env test-e2e-node e2e-start e2e-stop test-e2e-env-controllers

e2e-env:
	@bash e2e/build.sh

test-e2e-env: e2e-env
	@bash e2e/tests/testenv_smoke.sh

test-e2e-node: e2e-env
	@bash e2e/tests/node_smoke.sh

e2e-start: e2e-env
	@bash e2e/testenv.sh start $(E2E_ENV_DIR)
	@echo "export KUBECONFIG=$(E2E_ENV_DIR)/kubeconfig"

e2e-stop:
	@bash e2e/testenv.sh stop $(E2E_ENV_DIR)

test-e2e-env-controllers:
	@E2E_WITH_CONTROLLERS=1 bash e2e/build.sh
	@E2E_WITH_CONTROLLERS=1 bash e2e/tests/testenv_smoke.sh

TEST_PARTS += test-e2e-env test-e2e-node
