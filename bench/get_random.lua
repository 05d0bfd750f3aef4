-- wrk script: GET a random one of N preloaded traces. Set WRK_KIND and WRK_TRACES.
local kind = os.getenv("WRK_KIND") or "summary"
local traces = tonumber(os.getenv("WRK_TRACES") or "100000")
request = function()
  local i = math.random(0, traces - 1)
  local path
  if kind == "summary" then
    path = string.format("/v1/traces/pre-%d", i)
  elseif kind == "events" then
    path = string.format("/v1/traces/pre-%d/events?limit=100", i)
  elseif kind == "search" then
    path = string.format("/v1/traces?domain_id=ds%d/1&component=writer&limit=20", i % 500)
  else
    path = string.format("/v1/paths?path=raw/pre/%d.csv", i)
  end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  io.write(string.format("LATENCY_US p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
