-- charge.lua at a fixed rate: $BENCH_RATE requests/s in total over $BENCH_THREADS wrk threads (wrk2 is not in
-- Debian). Each thread keeps an absolute send schedule; delay() holds a free connection until its slot. Latency
-- is measured by wrk from the actual send, so the script also counts sends that left after their slot
-- (`late`, `lag_max_ms`): with few of them the open-loop figures hold (no coordinated omission to speak of).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "charge.lua")

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local LATE_MS = 1.0
local now_ts = ffi.new("bench_timespec")
local interval_ms = 1000.0 * tonumber(os.getenv("BENCH_THREADS") or "2") / tonumber(os.getenv("BENCH_RATE") or "100")
local next_at = nil
late = 0
lag_max_ms = 0

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1000.0 + tonumber(now_ts.tv_nsec) / 1e6
end

function delay()
  local now = now_ms()
  next_at = (next_at or now) + interval_ms
  local wait = next_at - now
  if wait < -LATE_MS then
    late = late + 1
    lag_max_ms = math.max(lag_max_ms, -wait)
  end
  return math.max(0, wait)
end

function done(summary, latency, requests)
  local late_total, lag_max = 0, 0
  for _, thread in ipairs(bench_threads) do
    late_total = late_total + thread:get("late")
    lag_max = math.max(lag_max, thread:get("lag_max_ms"))
  end
  io.write(string.format("%s late=%d lag_max_us=%d\n", bench_summary(summary, latency), late_total, lag_max * 1000))
end
