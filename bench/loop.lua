-- paykit.loop in a game tick: the worst tick overrun of a 20 ms tick while 64 calls are kept in
-- flight against the sandbox's Moka (each finished call is replaced at once), and the calls per
-- second through loop:step next to paykit.batch (the same status calls). Run from the
-- repository root with lua5.4 or luajit (bench/run). No thresholds: it prints what it measured.
--   PAYKIT_BENCH_LOOP_TICKS (default 250), PAYKIT_BENCH_LOOP_N (calls per throughput run, 2000)
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local core = require "paykit.core"
local paykit = require "paykit"
local sb = require "spec.support.sandbox"

local TICKS = tonumber(os.getenv("PAYKIT_BENCH_LOOP_TICKS") or 250)
local N = tonumber(os.getenv("PAYKIT_BENCH_LOOP_N") or 2000)
local now = core.monotonic

local base = sb.start()
local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" })
local ref = "bench-loop-" .. core.random_hex(4)
assert(gw:purchase { three_d = false, reference = ref, amount = "1.00", currency = "TL", client_ip = "127.0.0.1",
  card = { holder = "A B", number = "4111111111111111", exp_month = "12", exp_year = "2030", cvc = "123" } })
local function call() return gw:status(ref) end

-- 1. the tick: 64 calls always in flight (each finished call replaced at once). "slow": slow-card
-- payments (the sandbox answers after 3 s: the calls stay in flight, the tick only watches
-- them); "busy": status calls the sandbox answers at once (the tick runs every answer: the
-- loop at full throughput inside the tick).
local function slow()
  return gw:purchase { three_d = false, reference = "bench-slow-" .. core.random_hex(6), amount = "1.00", currency = "TL",
    client_ip = "127.0.0.1", card = { holder = "A B", number = "4000000000200008", exp_month = "12", exp_year = "2030", cvc = "123" } }
end
local function tick_run(label, fn)
  local lp = paykit.loop.new { max_in_flight = 64 }
  local done, ticking = 0, true
  local function keep() lp:start(fn, function() done = done + 1; if ticking then keep() end end) end
  for _ = 1, 64 do keep() end
  local TICK, worst, total_step, worst_step = 0.020, 0, 0, 0
  local next_tick = now() + TICK
  for _ = 1, TICKS do
    local rest = next_tick - now()
    if rest > 0 then core.sleep(rest) end
    local t0 = now()
    lp:step(0)
    local d = now() - t0
    total_step = total_step + d
    if d > worst_step then worst_step = d end
    -- the overrun: how far this tick's work ran past the start of the next tick
    local late = now() - (next_tick + TICK)
    if late > worst then worst = late end
    next_tick = next_tick + TICK
    if next_tick < now() then next_tick = now() end -- per tick: no backlog carried over
  end
  ticking = false
  lp:close()
  print(string.format("loop tick (%s): %d ticks of 20 ms, 64 calls in flight: worst tick overrun %.2f ms; "
    .. "step(0) %.3f ms average, %.2f ms worst; %d calls finished",
    label, TICKS, worst * 1000, total_step / TICKS * 1000, worst_step * 1000, done))
end
tick_run("slow card, 3 s", slow)
tick_run("busy, instant answers", call)

-- 2. throughput: N status calls, 64 in flight
local function tasks()
  local t = {}
  for i = 1, N do t[i] = call end
  return t
end
local t0 = now()
local results = paykit.batch(tasks(), { max_in_flight = 64 })
local batch_s = now() - t0
assert(results[N] and results[N].status == "paid")
local lp = paykit.loop.new { max_in_flight = 64 }
local ok = 0
t0 = now()
for _, fn in ipairs(tasks()) do lp:start(fn, function(r) if r then ok = ok + 1 end end) end
while lp:pending() > 0 do lp:step(0.05) end
local step_s = now() - t0
lp:close()
assert(ok == N)
print(string.format("loop throughput: %d status calls, 64 in flight: paykit.loop step %.0f calls/s, paykit.batch %.0f calls/s (%s)",
  N, N / step_s, N / batch_s, rawget(_G, "jit") and "luajit" or "lua5.4"))
sb.stop()
