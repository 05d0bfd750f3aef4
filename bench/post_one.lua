-- wrk script: one native event per POST, each of a new trace (a random id); each event's
-- end_time is the current second, as a producer reports it.
local counter = 0
-- WAYMARK_BENCH_AUTHORIZATION, when set, is sent as the Authorization header (auth on).
local headers = {["Content-Type"] = "application/json"}
local authorization = os.getenv("WAYMARK_BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then headers["Authorization"] = authorization end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"trace_id":"bench-%d-%d","component":"writer","stage":"WRITE","status":"SUCCESS",' ..
    '"end_time":"%s","path":"raw/bench/%d.csv"}',
    math.random(1, 1000000000), math.floor(counter / 10), os.date("!%Y-%m-%dT%H:%M:%SZ"), counter)
  return wrk.format("POST", "/v1/events", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("LATENCY_US p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
