-- The payment journal's cost per payment (store round trips and microseconds) on the memory
-- store, a shared dict (inside a 1-worker nginx) and a local redis-server; and the sweeper's
-- throughput (stuck payments resolved per second against the sandbox's Moka, status calls
-- sent together through paykit.batch). Run from the repository root with lua5.4 (bench/run).
-- No thresholds: it prints what it measured.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local core = require "paykit.core"
local paykit = require "paykit"
local journal = require "paykit.journal"
local store = require "paykit.store"
local rs = require "spec.support.redis"
local nginx = require "spec.support.nginx"
local sb = require "spec.support.sandbox"

local REDIS_PORT = tonumber(os.getenv("PAYKIT_BENCH_REDIS_PORT") or 16490)
local NGINX_PORT = tonumber(os.getenv("PAYKIT_BENCH_JOURNAL_PORT") or 18765)
local N = tonumber(os.getenv("PAYKIT_BENCH_JOURNAL_N") or 2000)

-- One payment's journal work, as a wrapped gateway does it: record, sent, redirect, paid
-- (and out of the index), then the grant's claim and confirm.
local function one_payment(j, ref)
  assert(j:create { provider = "bench", reference = ref, amount = "27.50", currency = "TL" })
  assert(j:move("bench", ref, "sent"))
  assert(j:move("bench", ref, "redirect", { keep = { code_for_hash = "x" } }))
  assert(j:move("bench", ref, "paid"))
  assert(j:confirm(assert(j:claim("bench", ref))))
end

local function counting(s)
  local c = { n = 0 }
  return setmetatable({}, { __index = function(_, k)
    local f = s[k]
    return function(_, ...) c.n = c.n + 1; return f(s, ...) end
  end }), c
end

local function measure(name, s, n)
  local cs, c = counting(s)
  local j = journal.new { store = cs }
  one_payment(j, "warm-" .. core.random_hex(4))
  c.n = 0
  local prefix = "b-" .. core.random_hex(4) .. "-"
  local t0 = core.monotonic()
  for i = 1, n do one_payment(j, prefix .. i) end
  local dt = core.monotonic() - t0
  print(string.format("  %-12s %6d payments  %5.1f round trips/payment  %8.1f us/payment",
    name, n, c.n / n, dt / n * 1e6))
end

print("journal cost per payment (record, sent, redirect, paid, claim, confirm)")
measure("memory", store.memory(), N)

-- Redis with AOF fsync on every write (what the specs run: nothing acknowledged is lost), and
-- with everysec (Redis's default: up to a second of writes lost on a power cut)
local srv = rs.start { port = REDIS_PORT, password = "bench-pw" }
local ok, err = pcall(function()
  measure("redis always", assert(store.redis { port = REDIS_PORT, password = "bench-pw" }), math.max(1, math.floor(N / 4)))
  srv:cli("CONFIG", "SET", "appendfsync", "everysec")
  measure("redis 1s", assert(store.redis { port = REDIS_PORT, password = "bench-pw" }), N)
end)
if not ok then print("  redis: " .. tostring(err)) end

-- shared dict: the same loop inside nginx (one worker), timed there
local conf = [=[
  lua_shared_dict bench_journal 32m;
  server {
    listen 127.0.0.1:${PORT};
    location /run {
      content_by_lua_block {
        local core = require "paykit.core"
        local journal = require "paykit.journal"
        local s = require("paykit.store").shdict("bench_journal")
        local n, calls = tonumber(ngx.var.arg_n), 0
        local cs = setmetatable({}, { __index = function(_, k)
          local f = s[k]
          return function(_, ...) calls = calls + 1; return f(s, ...) end
        end })
        local j = journal.new { store = cs }
        local prefix = "b-" .. core.random_hex(4) .. "-"
        local t0 = core.monotonic()
        for i = 1, n do
          local ref = prefix .. i
          assert(j:create { provider = "bench", reference = ref, amount = "27.50", currency = "TL" })
          assert(j:move("bench", ref, "sent"))
          assert(j:move("bench", ref, "redirect", { keep = { code_for_hash = "x" } }))
          assert(j:move("bench", ref, "paid"))
          assert(j:confirm(assert(j:claim("bench", ref))))
        end
        ngx.say(string.format("%.1f %.1f", calls / n, (core.monotonic() - t0) / n * 1e6))
      }
    }
  }
]=]
ok, err = pcall(function()
  local ng = nginx.start("bench-journal", conf, { PORT = NGINX_PORT })
  local c = core.http_client { timeout = 60000 }
  local res = c:request { method = "GET", url = "http://127.0.0.1:" .. NGINX_PORT .. "/run?n=" .. N }
  c:close()
  ng:stop()
  local rt, us = tostring(res and res.body):match("([%d%.]+) ([%d%.]+)")
  if not rt then error("no answer: " .. tostring(res and (res.body or res.error))) end
  print(string.format("  %-12s %6d payments  %5.1f round trips/payment  %8.1f us/payment", "shdict", N, rt, us))
end)
if not ok then print("  shdict: " .. tostring(err)) end

-- the sweeper: stuck payments (sent, paid at Moka) resolved in one sweep
ok, err = pcall(function()
  local base = sb.start()
  local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" }
  local j = journal.new { store = assert(store.redis { port = REDIS_PORT, password = "bench-pw" }) }
  local stuck = tonumber(os.getenv("PAYKIT_BENCH_SWEEP_N") or 200)
  for i = 1, stuck do
    local ref = "sw-" .. core.random_hex(4) .. "-" .. i
    assert(j:create { provider = "moka", reference = ref, amount = "1.00", currency = "TL" })
    assert(j:move("moka", ref, "sent"))
    assert(gw:purchase { reference = ref, amount = "1.00", currency = "TL", client_ip = "127.0.0.1", three_d = false,
      card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
  end
  core.sleep(1.1)
  local jg = j:wrap(gw, { grant = function() return true end })
  local t0 = core.monotonic()
  local report = assert(jg:sweep { older_than = 1, limit = stuck, max_in_flight = 32 })
  local dt = core.monotonic() - t0
  print(string.format("sweeper: %d stuck payments, %d resolved (and granted: %d) in %.2f s: %.0f payments/s",
    stuck, #report.resolved, report.granted, dt, #report.resolved / dt))
  sb.stop()
end)
if not ok then print("  sweeper: " .. tostring(err)) end
srv:stop()
