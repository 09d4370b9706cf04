-- wrk script for bench/run.py. Usage: wrk [-H "Authorization: Bearer hc_..."] -s load.lua URL -- MODE TOKEN
--   Every request carries the headers given with -H (the API token).
--   MODE write: small writes (PATCH /v1/nodes/bench-N, a metrics change), a unique X-Request-Id
--               per request (TOKEN keeps ids unique across runs);
--   MODE read:  GET of the URL as given (the baseline: /livez, the HTTP stack without Raft).
-- Prints one line "RESULT {json}" with counts and p50/p99 latency in microseconds.
local mode = "read"
local token = "run"
local counter = 0
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  if args[1] ~= nil then mode = args[1] end
  if args[2] ~= nil then token = args[2] end
end

request = function()
  if mode ~= "write" then
    return wrk.format("GET")
  end
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do  -- those given with -H: a table passed replaces them
    headers[name] = value
  end
  headers["Content-Type"] = "application/json"
  headers["X-Request-Id"] = token .. "-" .. tid .. "-" .. counter
  return wrk.format("PATCH", "/v1/nodes/bench-" .. (counter % 16), headers,
                    '{"metrics":{"seq":' .. counter .. '}}')
end

done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
