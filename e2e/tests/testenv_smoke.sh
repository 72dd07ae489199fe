#!/usr/bin/env bash
# Smoke test of the e2e Kubernetes environment (e2e/testenv.sh): starts two
# environments side by side in temporary directories, checks on the first that
# the API server is the version we built, that namespaces, ServiceAccounts, the
# TokenRequest and TokenReview APIs and CRDs work as the vault will need them,
# checks that the second is isolated from the first, stops both and checks that
# no process is left. With E2E_WITH_CONTROLLERS=1 it also checks what the
# kube-controller-manager adds: default ServiceAccount, root CA ConfigMap,
# ownerReference garbage collection, namespace deletion.
# Uses only curl and jq. Ends with "N passed, N failed".
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTENV="$E2E_DIR/testenv.sh"
EXPECT_MINOR=${EXPECT_K8S_MINOR:-v1.37.}
for tool in curl jq base64; do
  command -v "$tool" >/dev/null || { echo "smoke: $tool is required" >&2; exit 1; }
done

PASSED=0 FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scaivault-testenv.XXXXXX")
A="$WORK/a" B="$WORK/b"
T0=$SECONDS

cleanup() {
  local rc=$?
  "$TESTENV" stop "$A" >/dev/null 2>&1 || true
  "$TESTENV" stop "$B" >/dev/null 2>&1 || true
  if (( rc != 0 || FAILED > 0 )); then
    echo "smoke: FAILED; logs kept in $WORK/*/logs" >&2
    (( FAILED > 0 )) || FAILED=1
  else
    rm -rf "$WORK"
  fi
  echo "testenv smoke: $PASSED passed, $FAILED failed ($(( SECONDS - T0 ))s)"
  (( FAILED == 0 )) || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # so that cleanup (the EXIT trap) also runs then
set -E  # say which command failed outside a check (e.g. curl could not connect)
trap 'echo "  FAIL line $LINENO: $BASH_COMMAND" >&2' ERR

ok() { PASSED=$(( PASSED + 1 )); echo "  ok   $*"; }
fail() { FAILED=$(( FAILED + 1 )); echo "  FAIL $*" >&2; exit 1; }
# check DESCRIPTION COMMAND...: pass if COMMAND succeeds, else fail loudly.
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }

envval() { grep "^$2=" "$1/env" | cut -d= -f2-; }

# api DIR METHOD PATH [JSON]: request as admin; body to stdout, status code in $WORK/code.
api() {
  local dir=$1 method=$2 path=$3 body=${4:-}
  local args=(-sS --max-time 30 -X "$method" --cacert "$(envval "$dir" TESTENV_CA_FILE)"
              -H "Authorization: Bearer $(cat "$(envval "$dir" TESTENV_ADMIN_TOKEN_FILE)")"
              -H "Accept: application/json, */*;q=0.1" -o "$WORK/body" -w '%{http_code}')
  [[ -z "$body" ]] || args+=(-H "Content-Type: application/json" --data-binary "$body")
  curl "${args[@]}" "$(envval "$dir" TESTENV_APISERVER_URL)$path" > "$WORK/code"
  cat "$WORK/body"
}
code() { cat "$WORK/code"; }
b64url_decode() {
  local s=${1//-/+}; s=${s//_//}
  while (( ${#s} % 4 )); do s+='='; done
  base64 -d <<<"$s"
}
b64url_encode() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

echo "smoke: starting two environments side by side in $WORK"
"$TESTENV" start "$A" > "$WORK/start-a.log" 2>&1 & pa=$!
"$TESTENV" start "$B" > "$WORK/start-b.log" 2>&1 & pb=$!
ra=0 rb=0; wait $pa || ra=$?; wait $pb || rb=$?
(( ra == 0 )) || { cat "$WORK/start-a.log" >&2; fail "environment A starts"; }
(( rb == 0 )) || { cat "$WORK/start-b.log" >&2; fail "environment B starts"; }
ok "both environments started in $(( SECONDS - T0 ))s"
check "kubeconfig written" grep -q "server: $(envval "$A" TESTENV_APISERVER_URL)" "$A/kubeconfig"
check "the environments use different ports" \
  test "$(envval "$A" TESTENV_APISERVER_PORT) $(envval "$A" TESTENV_ETCD_PORT)" != \
       "$(envval "$B" TESTENV_APISERVER_PORT) $(envval "$B" TESTENV_ETCD_PORT)"

# --- version ---------------------------------------------------------------
version=$(api "$A" GET /version | jq -r .gitVersion)
check "/version reports $version (want ${EXPECT_MINOR}x)" [ "${version#"$EXPECT_MINOR"}" != "$version" ]

# --- namespace and ServiceAccount ---------------------------------------------
NS="smoke-$RANDOM$RANDOM" SA=vault-client AUD=scaivault
api "$A" POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
check "namespace $NS created (HTTP $(code))" [ "$(code)" = 201 ]
phase=$(api "$A" GET "/api/v1/namespaces/$NS" | jq -r .status.phase)
check "namespace is $phase" [ "$phase" = Active ]
api "$A" POST "/api/v1/namespaces/$NS/serviceaccounts" \
  "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":\"$SA\"}}" >/dev/null
check "ServiceAccount $SA created (HTTP $(code))" [ "$(code)" = 201 ]

# --- TokenRequest ------------------------------------------------------------
token=$(api "$A" POST "/api/v1/namespaces/$NS/serviceaccounts/$SA/token" \
  "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\",\"spec\":{\"audiences\":[\"$AUD\"],\"expirationSeconds\":600}}" |
  jq -r '.status.token // empty')
check "TokenRequest minted a token (HTTP $(code))" [ "$(code)" = 201 -a -n "$token" ]
IFS=. read -r jwt_h jwt_p jwt_s <<<"$token"
claims=$(b64url_decode "$jwt_p")
check "token is an RS256 JWT" [ "$(b64url_decode "$jwt_h" | jq -r .alg)" = RS256 -a -n "$jwt_s" ]
check "token sub is system:serviceaccount:$NS:$SA" [ "$(jq -r .sub <<<"$claims")" = "system:serviceaccount:$NS:$SA" ]
check "token aud is [$AUD]" [ "$(jq -c .aud <<<"$claims")" = "[\"$AUD\"]" ]
check "token iss is the apiserver URL" [ "$(jq -r .iss <<<"$claims")" = "$(envval "$A" TESTENV_SA_ISSUER)" ]

# --- TokenReview ---------------------------------------------------------------
review() {  # review TOKEN AUDIENCE -> TokenReview status JSON
  api "$A" POST /apis/authentication.k8s.io/v1/tokenreviews \
    "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$1\",\"audiences\":[\"$2\"]}}" |
    jq -c .status
}
st=$(review "$token" "$AUD")
check "TokenReview authenticates the token (HTTP $(code)): $st" \
  [ "$(jq -r .authenticated <<<"$st")" = true ]
check "TokenReview user is system:serviceaccount:$NS:$SA" \
  [ "$(jq -r .user.username <<<"$st")" = "system:serviceaccount:$NS:$SA" ]
check "TokenReview groups include system:serviceaccounts:$NS" \
  [ "$(jq --arg g "system:serviceaccounts:$NS" '.user.groups | index($g) != null' <<<"$st")" = true ]
check "TokenReview audiences are [$AUD]" [ "$(jq -c .audiences <<<"$st")" = "[\"$AUD\"]" ]

forged_p=$(jq -c --arg s "system:serviceaccount:$NS:admin" '.sub = $s' <<<"$claims" | b64url_encode)
st=$(review "$jwt_h.$forged_p.$jwt_s" "$AUD")
check "TokenReview rejects a forged token (changed sub, old signature): $st" \
  [ "$(jq -r '.authenticated // false' <<<"$st")" = false ]
# Flip the first signature character (the last one may only carry padding bits).
st=$(review "$jwt_h.$jwt_p.$( [ "${jwt_s:0:1}" = A ] && echo B || echo A )${jwt_s:1}" "$AUD")
check "TokenReview rejects a token with an altered signature: $st" \
  [ "$(jq -r '.authenticated // false' <<<"$st")" = false ]
st=$(review "$token" "not-$AUD")
check "TokenReview rejects the token for a wrong audience: $st" \
  [ "$(jq -r '.authenticated // false' <<<"$st")" = false ]

# --- service-account issuer discovery (what an external verifier uses) ---------
check "OIDC discovery names the issuer" \
  [ "$(api "$A" GET /.well-known/openid-configuration | jq -r .issuer)" = "$(envval "$A" TESTENV_SA_ISSUER)" ]
check "JWKS has an RSA key" [ "$(api "$A" GET /openid/v1/jwks | jq -r '.keys[0].kty')" = RSA ]

# --- CustomResourceDefinition ----------------------------------------------------
CRD='{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
 "metadata":{"name":"smokes.e2e.scaivault.io"},
 "spec":{"group":"e2e.scaivault.io","scope":"Namespaced",
  "names":{"plural":"smokes","singular":"smoke","kind":"Smoke","listKind":"SmokeList"},
  "versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}},
   "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object",
    "required":["path"],"properties":{"path":{"type":"string","minLength":1}}}}}}}]}}'
api "$A" POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$CRD" >/dev/null
check "CRD created (HTTP $(code))" [ "$(code)" = 201 ]
established=
for _ in $(seq 1 100); do
  established=$(api "$A" GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/smokes.e2e.scaivault.io |
    jq -r '.status.conditions[]? | select(.type == "Established") | .status')
  [ "$established" = True ] && break
  sleep 0.1
done
check "CRD becomes Established" [ "$established" = True ]
cr_path="/apis/e2e.scaivault.io/v1/namespaces/$NS/smokes"
for _ in $(seq 1 50); do  # discovery of the new group can lag Established briefly
  api "$A" POST "$cr_path" "{\"apiVersion\":\"e2e.scaivault.io/v1\",\"kind\":\"Smoke\",\"metadata\":{\"name\":\"one\"},\"spec\":{\"path\":\"kv/a\"}}" >/dev/null
  [ "$(code)" = 404 ] || break
  sleep 0.2
done
check "custom resource created (HTTP $(code))" [ "$(code)" = 201 ]
api "$A" POST "$cr_path" "{\"apiVersion\":\"e2e.scaivault.io/v1\",\"kind\":\"Smoke\",\"metadata\":{\"name\":\"bad\"},\"spec\":{\"path\":\"\"}}" >/dev/null
check "schema validation rejects an invalid custom resource (HTTP $(code))" [ "$(code)" = 422 ]

# --- isolation of the second environment -----------------------------------------
check "environment B reports the same version" [ "$(api "$B" GET /version | jq -r .gitVersion)" = "$version" ]
api "$B" GET "/api/v1/namespaces/$NS" >/dev/null
check "environment B does not see A's namespace (HTTP $(code))" [ "$(code)" = 404 ]

# --- kube-controller-manager (E2E_WITH_CONTROLLERS=1) ----------------------------
# poll_code DIR PATH WANT [TRIES]: poll GET PATH (0.2 s apart) until its status is WANT.
poll_code() {
  local i
  for (( i = 0; i < ${4:-150}; i++ )); do
    api "$1" GET "$2" >/dev/null
    [ "$(code)" = "$3" ] && return 0
    sleep 0.2
  done
  return 1
}
if [[ "${E2E_WITH_CONTROLLERS:-0}" == 1 ]]; then
  check "controller manager runs" [ -n "$(envval "$A" TESTENV_CONTROLLER_MANAGER_PID)" ]
  check "the serviceaccount controller created $NS/default" \
    poll_code "$A" "/api/v1/namespaces/$NS/serviceaccounts/default" 200
  check "the root CA publisher created $NS/kube-root-ca.crt" \
    poll_code "$A" "/api/v1/namespaces/$NS/configmaps/kube-root-ca.crt" 200
  owner_uid=$(api "$A" POST "/api/v1/namespaces/$NS/configmaps" '{"metadata":{"name":"owner"}}' | jq -r .metadata.uid)
  api "$A" POST "/api/v1/namespaces/$NS/configmaps" \
    "{\"metadata\":{\"name\":\"dependent\",\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"owner\",\"uid\":\"$owner_uid\"}]}}" >/dev/null
  check "dependent ConfigMap created (HTTP $(code))" [ "$(code)" = 201 ]
  api "$A" DELETE "/api/v1/namespaces/$NS/configmaps/owner" >/dev/null
  check "the garbage collector deletes the dependent of a deleted owner" \
    poll_code "$A" "/api/v1/namespaces/$NS/configmaps/dependent" 404
  api "$A" DELETE "/api/v1/namespaces/$NS" >/dev/null
  check "the namespace controller finishes deleting $NS (with its custom resource)" \
    poll_code "$A" "/api/v1/namespaces/$NS" 404 300
fi

# --- stop ---------------------------------------------------------------------
pids=$(grep -h '_PID=' "$A/env" "$B/env" | cut -d= -f2 | tr '\n' ' ')
"$TESTENV" stop "$A" >/dev/null
"$TESTENV" stop "$B" >/dev/null
alive() {  # any pid of the list still running (zombies count as gone)?
  local p s
  for p in $pids; do
    s=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
    [[ "$s" == Z || "$s" == X ]] || return 0
  done
  return 1
}
check "stop leaves no process behind (pids $pids)" eval '! alive'
check "no process mentions $WORK" eval '! grep -lsF -- "$WORK/" /proc/[0-9]*/cmdline >/dev/null'
check "status reports A stopped" eval '! "$TESTENV" status "$A"'
