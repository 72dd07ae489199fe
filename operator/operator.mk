# operator/operator.mk: the Kubernetes side of ScaiVault (see operator/README.md).
# Included by the root Makefile after e2e/e2e.mk; paths are relative to the repository root.
#
#   make crds                regenerate crds/ from the Rust types (commit the result)
#   make test-operator-crds  drift test + install crds/ into the real kube-apiserver of e2e/
#   make e2e                 the operator end to end: real kube-apiserver, real
#                            scaivault-server dev, the scaivault-operator binary (~1 min
#                            once built; prints the time for 100 VaultSecrets to be Ready)
#
# All of these are also part of `cargo test --workspace` (make test-rust), so nothing is
# appended to TEST_PARTS. They need the e2e binaries (they fail, telling you to run
# `make e2e-env`, when those are missing) and target/debug/scaivault-server (started by the
# tests, found next to the test executable), hence the extra prerequisites of test-rust.

.PHONY: crds test-operator-crds e2e

crds:
	$(CARGO) run -q -p scaivault-operator --bin crdgen

test-operator-crds: e2e-env
	$(CARGO) test -p scaivault-operator --test crd_drift --test crd_apiserver

e2e: e2e-env build
	$(CARGO) test -p scaivault-operator --test operator_e2e --test crd_apiserver -- --nocapture

test-rust: e2e-env build
