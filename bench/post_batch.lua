-- wrk script: batches of 500 native events (50 traces of 10 events) per POST, new ids each time.
local counter = 0
-- WAYMARK_BENCH_AUTHORIZATION, when set, is sent as the Authorization header (auth on).
local headers = {["Content-Type"] = "application/json"}
local authorization = os.getenv("WAYMARK_BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then headers["Authorization"] = authorization end
local seed = math.random(1, 1000000000)
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 500 do
    parts[i] = string.format(
      '{"trace_id":"b%d-%d-%d","component":"writer","stage":"WRITE","status":"SUCCESS",' ..
      '"end_time":"2026-11-20T10:00:%02dZ","path":"raw/bench/%d-%d.csv"}',
      seed, counter, i % 50, i % 60, counter, i)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", "/v1/events", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("LATENCY_US p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
