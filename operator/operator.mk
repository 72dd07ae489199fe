# operator/operator.mk: the Kubernetes CRDs of ScaiVault (see operator/README.md).
# Included by the root Makefile after e2e/e2e.mk; paths are relative to the repository root.
#
#   make crds                regenerate crds/ from the Rust types (commit the result)
#   make test-operator-crds  drift test + install crds/ into the real kube-apiserver of e2e/
#
# Both tests are also part of `cargo test --workspace` (make test-rust), so nothing is
# appended to TEST_PARTS. The apiserver test needs the e2e binaries (it fails, telling you
# to run `make e2e-env`, when they are missing), hence the extra prerequisite of test-rust.

.PHONY: crds test-operator-crds

crds:
	$(CARGO) run -q -p scaivault-operator --bin crdgen

test-operator-crds: e2e-env
	$(CARGO) test -p scaivault-operator --test crd_drift --test crd_apiserver

test-rust: e2e-env
