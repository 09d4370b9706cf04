-- wrk script for bench/run.py's side-by-side run against etcd's JSON gateway (v3).
-- Usage: wrk -s etcd.lua URL -- MODE TOKEN
--   MODE write: POST /v3/kv/put of key bench-N (16 keys, as hacoord's 16 nodes) with a new value;
--   MODE read:  POST /v3/kv/range of key bench-1 (linearizable: etcd's default);
--   MODE local: the same range, serializable (answered from the member's own state).
-- Prints one line "RESULT {json}" like load.lua.
local mode = "read"
local token = "run"
local counter = 0
local keys = {}

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

function init(args)
  if args[1] ~= nil then mode = args[1] end
  if args[2] ~= nil then token = args[2] end
  for i = 0, 15 do keys[i] = b64("bench-" .. i) end
end

request = function()
  local headers = {}
  headers["Content-Type"] = "application/json"
  if mode == "local" then
    return wrk.format("POST", "/v3/kv/range", headers,
                      '{"key":"' .. keys[1] .. '","serializable":true}')
  end
  if mode ~= "write" then
    return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. keys[1] .. '"}')
  end
  counter = counter + 1
  return wrk.format("POST", "/v3/kv/put", headers,
                    '{"key":"' .. keys[counter % 16] .. '","value":"' .. b64(token .. counter) .. '"}')
end

done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
