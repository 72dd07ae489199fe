-- One wrk script for every workload and both servers; parameters come from the
-- environment (set by bench/bench.py):
--   BENCH_KIND      scaivault | openbao
--   BENCH_WORKLOAD  read | write | mix | list | health
--   BENCH_TOKEN     token sent on every request
--   BENCH_PREFIXES, BENCH_PER_PREFIX   data set shape: bench/p<i>/k<j>
--   BENCH_WRITE_PCT share of writes in the mix workload (percent)
--   BENCH_VALUE_BYTES size of the secret value
-- done() prints one line "BENCH_JSON {...}" that the harness parses.

local kind      = os.getenv("BENCH_KIND") or "scaivault"
local workload  = os.getenv("BENCH_WORKLOAD") or "read"
local token     = os.getenv("BENCH_TOKEN") or ""
local prefixes  = tonumber(os.getenv("BENCH_PREFIXES") or "10")
local per       = tonumber(os.getenv("BENCH_PER_PREFIX") or "1000")
local write_pct = tonumber(os.getenv("BENCH_WRITE_PCT") or "10")
local vbytes    = tonumber(os.getenv("BENCH_VALUE_BYTES") or "100")
local nkeys     = prefixes * per

local headers = { ["Content-Type"] = "application/json" }
if kind == "openbao" then
  headers["X-Vault-Token"] = token
else
  headers["Authorization"] = "Bearer " .. token
end

local function key_path(i)
  return string.format("bench/p%d/k%05d", math.floor(i / per), i % per)
end

local function read_req(path)
  if kind == "openbao" then
    return wrk.format("GET", "/v1/secret/data/" .. path, headers)
  end
  return wrk.format("GET", "/v1/secrets/" .. path, headers)
end

local counter = 0
local my_tid = 0

-- A fresh value of exactly vbytes bytes for every write, so each write is a new version.
local function value()
  counter = counter + 1
  local s = string.format("t%d-n%d-", my_tid, counter)
  return s .. string.rep("x", vbytes - #s)
end

local function write_req(path)
  local body = '{"data":{"value":"' .. value() .. '"}}'
  if kind == "openbao" then
    return wrk.format("POST", "/v1/secret/data/" .. path, headers, body)
  end
  return wrk.format("PUT", "/v1/secrets/" .. path, headers, body)
end

-- setup runs in the main Lua state once per thread: it sets the global
-- bench_tid in that thread's own Lua state.
local next_tid = 0
function setup(thread)
  thread:set("bench_tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  my_tid = tonumber(rawget(_G, "bench_tid")) or 0
  math.randomseed(os.time() * 1000 + my_tid * 7919)
end

local function static(method, path, body)
  wrk.method = method
  wrk.path = path
  wrk.headers = headers
  wrk.body = body
end

if workload == "read" then
  -- Static request (no request() function): wrk's fast path, same bytes each time.
  if kind == "openbao" then
    static("GET", "/v1/secret/data/bench/one")
  else
    static("GET", "/v1/secrets/bench/one")
  end
elseif workload == "list" then
  if kind == "openbao" then
    -- OpenBao's LIST verb; wrk's request parser rejects the method name LIST, so use
    -- the equivalent form OpenBao documents for clients without custom verbs.
    static("GET", "/v1/secret/metadata/bench/p0/?list=true")
  else
    static("GET", "/v1/secrets?prefix=bench/p0/&limit=1000")
  end
elseif workload == "health" then
  -- Baseline (optional): unauthenticated health check, the HTTP stack's ceiling here.
  if kind == "openbao" then
    static("GET", "/v1/sys/health")
  else
    static("GET", "/v1/health")
  end
elseif workload == "write" then
  request = function() return write_req(key_path(math.random(0, nkeys - 1))) end
elseif workload == "mix" then
  request = function()
    local path = key_path(math.random(0, nkeys - 1))
    if math.random(1, 100) <= write_pct then
      return write_req(path)
    end
    return read_req(path)
  end
else
  error("unknown BENCH_WORKLOAD " .. workload)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeout_errors":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
