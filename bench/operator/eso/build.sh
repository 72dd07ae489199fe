#!/usr/bin/env bash
# Builds the External Secrets Operator peer of `make bench-operator` (never `make test`):
# the release ESO_VERSION from the Go module proxy, with only the providers and generators
# the bench uses registered (the Vault provider; the password and uuid generators). The
# other ~35 providers pull in every cloud SDK and add tens of minutes on 2 cores without
# touching the code path measured (the controllers, the Kubernetes client, the cache).
#
# Why v0.16.2: newer releases (v1.x) `replace` their apis/runtime/provider modules with
# local directories that are separate modules the proxy does not serve, so they cannot be
# built from the proxy at all. v0.16.2 is one module.
#
# Prints two lines, `ESO_BIN=...` and `ESO_CRDS=...`. The binary is cached under
# ESO_CACHE keyed on the version and this script, like e2e/build.sh.
set -euo pipefail
version=${ESO_VERSION:-v0.16.2}
module=github.com/external-secrets/external-secrets
cache=${ESO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scaivault/eso}
key=$(cat "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
out="$cache/$version-$key"
if [ ! -x "$out/external-secrets" ]; then
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local
  dir=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  python3 - "$work/src" <<'PY'
import re, sys
root = sys.argv[1]
keep = {
    "pkg/provider/register/register.go": ["pkg/provider/vault"],
    "pkg/generator/register/register.go": ["pkg/generator/password", "pkg/generator/uuid"],
}
for path, wanted in keep.items():
    f = f"{root}/{path}"
    text = open(f).read()
    line = re.compile(r'\t_ "github.com/external-secrets/external-secrets/(pkg/[^"]+)"\n')
    text = line.sub(lambda m: m.group(0) if m.group(1) in wanted else "", text)
    open(f, "w").write(text)
PY
  mkdir -p "$out.tmp"
  echo "bench: building External Secrets Operator $version (vault provider only)" >&2
  (cd "$work/src" && go build -trimpath -o "$out.tmp/external-secrets" .)
  cp "$work/src/deploy/crds/bundle.yaml" "$out.tmp/crds.yaml"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "ESO_BIN=$out/external-secrets"
echo "ESO_CRDS=$out/crds.yaml"
