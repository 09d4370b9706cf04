-- wrk script: small writes (SetNodeState metrics) with a unique X-Request-Id per request.
-- Usage: wrk -s write.lua URL -- RUN_TOKEN
local token = "run"
local counter = 0
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  if args[1] ~= nil then token = args[1] end
end

request = function()
  counter = counter + 1
  local node = "bench-" .. (counter % 16)
  local body = '{"metrics":{"seq":' .. counter .. '}}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Request-Id"] = token .. "-" .. tid .. "-" .. counter
  return wrk.format("PATCH", "/v1/nodes/" .. node, headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
