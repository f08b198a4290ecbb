-- wrk script for `make bench`: POST a charge, each request with its own Idempotency-Key, and the bearer token
-- from $BENCH_TOKEN. Prints one machine-readable line at the end (parsed by bench/run.py).
local counter = 0
local prefix = ""
local token = os.getenv("BENCH_TOKEN") or ""
local path = os.getenv("BENCH_PATH") or "/api/v1/payments/charge"
local body = '{"amount":1099,"currency":"usd","payment_method":"pm_card_visa"}'
bench_threads = {}

function setup(thread)
  thread:set("id", #bench_threads + 1)
  table.insert(bench_threads, thread)
end

function init(args)
  -- unique per run and thread, so keys never repeat across the runs against one event store
  math.randomseed(os.time() * 1000 + id)
  prefix = string.format("bench-%d-%d-%d-", os.time(), math.random(1, 1000000000), id)
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format(nil, path)
end

function bench_summary(summary, latency)
  local errors = summary.errors
  return string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect, errors.read, errors.write, errors.timeout)
end

function done(summary, latency, requests)
  io.write(bench_summary(summary, latency) .. "\n")
end
