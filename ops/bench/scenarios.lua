-- wrk script for `make bench`: one scenario per run, chosen by environment variables.
--   BENCH_SCENARIO  healthz | get_by_id | list | list_304 | list_filtered | list_search |
--                   events | events_filtered | create | reference | reference_list |
--                   reference_healthz | reference_contract
--   BENCH_ETAG      If-None-Match for list_304 (the list's current ETag: answered 304)
--   BENCH_ROWS      ids are drawn from 1..BENCH_ROWS (get_by_id, reference, reference_contract)
--   BENCH_API_KEY   X-API-Key for create
--   BENCH_NONCE     makes create's source_audio unique across runs
-- done() prints one JSON line: requests, duration, latency percentiles (microseconds),
-- responses with status >= 400 and socket errors.

local scenario = os.getenv("BENCH_SCENARIO") or "healthz"
local rows = tonumber(os.getenv("BENCH_ROWS") or "20000")
local api_key = os.getenv("BENCH_API_KEY") or ""
local nonce = os.getenv("BENCH_NONCE") or "0"
local etag = os.getenv("BENCH_ETAG") or ""

local types = {
  "Structure%20Fire", "Medical%20Emergency", "Traffic%20Collision", "Vehicle%20Fire",
  "Brush%20Fire", "Alarm%20Activation", "Gas%20Leak", "Rescue",
}
local units = { "E1", "E2", "E5", "E9", "E12", "L1", "L3", "M2", "M4", "M7", "BC1", "R1" }
local terms = { "smoke", "patient", "gas", "flames", "extrication", "hydrant", "chest%20pain",
  "alarm", "vehicle", "elderly%20fall" }

local event_types = { "traffic.call.started", "traffic.call.ended", "alert.delivery.sent",
  "system.site.decode_rate.updated" }
local systems = { "S1", "S2", "S3", "S4", "S5" }

local threads = {}
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
  math.randomseed(1000 + thread_id)
end

local function pick(list)
  return list[math.random(#list)]
end

local paths = {
  healthz = function() return "/healthz" end,
  get_by_id = function() return "/api/v1/incidents/" .. math.random(rows) end,
  reference = function() return "/incidents/" .. math.random(rows) end,
  reference_list = function() return "/incidents" end,
  reference_contract = function() return "/contract/incidents/" .. math.random(rows) end,
  reference_healthz = function() return "/healthz" end,
  list = function() return "/api/v1/incidents?page_size=50" end,
  list_304 = function() return "/api/v1/incidents?page_size=50" end,
  list_filtered = function()
    return "/api/v1/incidents?page_size=50&incident_type=" .. pick(types) .. "&units=" .. pick(units)
  end,
  list_search = function() return "/api/v1/incidents?page_size=50&q=" .. pick(terms) end,
  events = function() return "/api/v1/events?limit=50" end,
  events_filtered = function()
    return "/api/v1/events?limit=50&event_type=" .. pick(event_types) .. "&system=" .. pick(systems)
  end,
}

local function create()
  counter = counter + 1
  local body = string.format(
    '{"dispatched_at":"2026-11-20T12:%02d:%02dZ","source_audio":"bench/run-%s/%d-%d.m4a",'
      .. '"incident_type":"%s","units":["%s","%s"],"channel":"FD Dispatch",'
      .. '"address":"%d Oak St","transcript":"engine respond to the report of smoke showing"}',
    counter % 60, counter % 60, nonce, thread_id, counter,
    (pick(types):gsub("%%20", " ")), pick(units), pick(units), 100 + counter % 900)
  return wrk.format("POST", "/api/v1/incidents",
    { ["Content-Type"] = "application/json", ["X-API-Key"] = api_key }, body)
end

function request()
  if scenario == "create" then
    return create()
  end
  if scenario == "list_304" then
    return wrk.format("GET", paths[scenario](), { ["If-None-Match"] = etag })
  end
  return wrk.format("GET", paths[scenario]())
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
