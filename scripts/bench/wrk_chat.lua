-- wrk script: POST chat completions, then print one machine-readable summary line.
--
--   BENCH_REQUESTS=<file> wrk -s scripts/bench/wrk_chat.lua -t1 -c1 -d10s http://127.0.0.1:8080/v1/chat/completions
--
-- <file> holds one request per line: "<bearer token or empty><TAB><JSON body>", then optionally
-- "<TAB><header name>: <value>" for each extra header (Portkey's routing headers). Requests are sent
-- round-robin (several lines = several principals or conversations). They are formatted once per
-- thread in init(), so the per-request cost stays in wrk's C code.
-- done() prints "BENCH_JSON {...}": counts, errors and latency percentiles in microseconds.

local requests = {}
local index = 0

function init(args)
  local path = wrk.path
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    local token, body, rest = line:match("^([^\t]*)\t([^\t]*)(.*)$")
    local headers = { ["Content-Type"] = "application/json" }
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    for name, value in rest:gmatch("\t([^:\t]+): ([^\t]*)") do
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format("POST", path, headers, body)
  end
  -- Threads start at different lines, so that a few connections do not all send the same one.
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
