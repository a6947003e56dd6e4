-- workload.lua: the benchmark's requests for wrk, one script for every workload.
--
-- wrk calls request() for every request, so every request draws its own key. Chosen by
-- environment variables (wrk passes no arguments to request()):
--   WORKLOAD     read-hit | read-zipf | read-miss | write | mixed | ping
--   KEYS         number of preloaded keys (bench:1 .. bench:KEYS)
--   VALUE_BYTES  size of written values (default 100)
--   HEADER       one extra request header, "Name: value" (a layer that needs an API key)
-- Each wrk thread has its own Lua state and its own random seed. read-zipf and mixed draw
-- from a Zipf distribution (s = 0.99, as YCSB does) through a precomputed CDF table, so that a
-- few keys are hot, as caches expect. done() prints one RESULT line that bench/run.sh parses.

local workload = os.getenv("WORKLOAD") or "read-hit"
local nkeys = tonumber(os.getenv("KEYS") or "10000")
local value = string.rep("v", tonumber(os.getenv("VALUE_BYTES") or "100"))
local read_headers = {}
local write_headers = { ["Content-Type"] = "application/json" }

local extra = os.getenv("HEADER")
if extra and extra ~= "" then
    local name, val = extra:match("^([^:]+):%s*(.*)$")
    read_headers[name] = val
    write_headers[name] = val
end

local next_id = 0

function setup(thread)
    thread:set("id", next_id) -- a distinct random seed per thread
    next_id = next_id + 1
end

local cdf     -- Zipf cumulative distribution over ranks 1..nkeys
local scatter -- a multiplier coprime with nkeys: rank -> key is then a permutation

local function gcd(a, b)
    while b ~= 0 do a, b = b, a % b end
    return a
end

local function zipf_init(n, s)
    cdf = {}
    local sum = 0
    for i = 1, n do
        sum = sum + 1 / (i ^ s)
        cdf[i] = sum
    end
    for i = 1, n do
        cdf[i] = cdf[i] / sum
    end
    scatter = 7919
    while gcd(scatter, n) ~= 1 do scatter = scatter + 2 end
end

-- A rank by binary search of the CDF, then a key: the popular ranks are scattered over the
-- key space, so that "hot" is not "bench:1..10" (which would all sit together in a B-tree page
-- or on one shard).
local function zipf_key()
    local u = math.random()
    local lo, hi = 1, nkeys
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return ((lo * scatter) % nkeys) + 1
end

function init(args)
    math.randomseed(os.time() * 1000 + (id or 0) * 7777 + math.floor(os.clock() * 1e6))
    if workload == "read-zipf" or workload == "mixed" then
        zipf_init(nkeys, 0.99)
    end
end

local function write_request(k)
    local body = '{"key":"bench:' .. k .. '","value":"' .. value .. '"}'
    return wrk.format("POST", "/write", write_headers, body)
end

local function read_request(path)
    return wrk.format("GET", path, read_headers)
end

function request()
    if workload == "read-hit" then
        return read_request("/read/bench:" .. math.random(nkeys))
    elseif workload == "read-zipf" then
        return read_request("/read/bench:" .. zipf_key())
    elseif workload == "read-miss" then
        return read_request("/read/miss:" .. math.random(1000000000))
    elseif workload == "write" then
        return write_request(math.random(nkeys))
    elseif workload == "mixed" then
        if math.random() < 0.1 then
            return write_request(zipf_key())
        end
        return read_request("/read/bench:" .. zipf_key())
    end
    return read_request("/ping")
end

-- Latencies in microseconds. wrk counts as "status" errors the responses with a status of 400
-- or more; connect, read, write and timeout errors are socket errors.
function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "RESULT rps=%.1f p50=%d p90=%d p99=%d max=%d non2xx=%d socket=%d requests=%d\n",
        summary.requests / seconds, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout,
        summary.requests))
end
