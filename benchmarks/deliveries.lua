-- wrk script for benchmarks/intake_http.py: each thread sends the pre-signed deliveries of its
-- own file once each, in order, one fresh request per call (wrk.format), and counts what came
-- back by status code; done() prints one JSON line for the benchmark to read.
--
--   wrk -t2 -c32 -d5s --latency -s deliveries.lua http://127.0.0.1:PORT -- FILE_PREFIX
--
-- Thread n reads FILE_PREFIX.n: one delivery a line, tab-separated fields: the path (with its
-- query), the body, then one "name: value" field per header. When a thread has sent all of
-- its deliveries it starts again from the first and counts every request after that as a
-- repeat (the benchmark reports repeats, and sizes the next batch so that there are none).

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  deliveries = {}
  for line in io.lines(args[1] .. "." .. index) do
    local fields = {}
    for field in line:gmatch("[^\t]+") do
      fields[#fields + 1] = field
    end
    local headers = {}
    for n = 3, #fields do
      local name, value = fields[n]:match("^([^:]+): (.*)$")
      headers[name] = value
    end
    deliveries[#deliveries + 1] = {path = fields[1], body = fields[2], headers = headers}
  end
  available = #deliveries
  sent = 0
  repeats = 0
  statuses = {}
end

function request()
  local delivery = deliveries[sent % #deliveries + 1]
  sent = sent + 1
  if sent > #deliveries then
    repeats = repeats + 1
  end
  return wrk.format("POST", delivery.path, delivery.headers, delivery.body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts, repeated, available = {}, 0, 0
  for _, thread in ipairs(threads) do
    repeated = repeated + thread:get("repeats")
    available = available + thread:get("available")
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local statuses_json = {}
  for status, count in pairs(counts) do
    statuses_json[#statuses_json + 1] = string.format('"%s": %d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "requests": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "statuses": {%s}, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "repeats": %d, "deliveries": %d}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99),
    latency.max, table.concat(statuses_json, ", "), errors.connect, errors.read,
    errors.write, errors.timeout, repeated, available))
end
