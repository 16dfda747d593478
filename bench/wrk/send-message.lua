-- wrk script for `npm run bench`: POST /send-message with a unique message per request,
-- `<prefix>-<n>` with n = thread * 1e9 + count; the prefix comes from the command line
-- (wrk ... -- PREFIX).
-- At the end it prints one JSON line (BENCH_RESULT {...}) that bench/wrk.ts reads.
local counter = 0
local thread_id = 0
local prefix = "m"
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  if args[1] ~= nil then prefix = args[1] end
  wrk.method = "POST"
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/send-message?message=" .. prefix .. "-" .. string.format("%d", thread_id * 1000000000 + counter))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
