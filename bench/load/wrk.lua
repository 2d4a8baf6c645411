-- The pollers of bench/load/: wrk sends each request to a random seeded job, counts the
-- answers by status code, and prints one line of figures for load.py to read.
--
--   wrk ... --script bench/load/wrk.lua URL -- PATHS_FILE
--
-- PATHS_FILE holds one request path a line ("/jobs/verify/<id>?token=<token>"). At the end, wrk
-- prints "IMMORTUS_WRK {json}": the requests, wrk's socket errors, the latency percentiles in
-- microseconds and the count of each status code answered.

local threads = {}
local paths = {}
-- Global, not local: done() reads each thread's copy with thread:get("statuses").
statuses = {}

function setup(thread)
  thread:set("number", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no request path in " .. args[1])
  math.randomseed(os.time() * 1000 + number)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local answered = {}
  for status, count in pairs(counts) do
    answered[#answered + 1] = string.format('"%d":%d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'IMMORTUS_WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"status_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.timeout, errors.status, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(answered, ",")))
end
