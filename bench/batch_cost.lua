-- The per-request cost of 64 in flight, layer by layer (a smaller bench/run batch, for working
-- on paykit.batch / paykit.loop): against a local nginx (1 worker, the benchmark's canned Moka
-- answer), on Lua 5.4 and LuaJIT,
--   (a) core wire_client:batch() alone (no Lua per request),
--   (b) paykit.batch of bare paykit.http requests (the same bytes),
--   (c) paykit.batch of Moka 3D starts,
--   (d) paykit.batch of MoCoPay verifyPayment calls,
--   (e) paykit.batch of Zippy create transaction calls (d and e answered with fixed bytes too),
-- client CPU microseconds per request (os.clock over N requests, median of REPEAT runs) and, with
-- BATCH_COST_IR=1, user instructions per request (callgrind: the difference between a run of
-- 2*M and one of M requests, divided by M, so start-up is not counted; M is BATCH_COST_M, default
-- 1000; BATCH_COST_KEEP=path keeps the profiles); then the memory of a
-- MEM_N-task batch (RSS before, peak, after). Run under nsrun, from the repository root:
--   nsrun NAME lua5.4 bench/batch_cost.lua [N] [MEM_N]
-- PAYKIT_TRANSPORT is passed on (the default, auto, is what a user gets).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local F = require "bench.fixtures"

local N = tonumber(arg[1] or 10000)
local MEM_N = tonumber(arg[2] or 100000)
local REPEAT = tonumber(os.getenv("BATCH_COST_REPEAT") or 3)
local IR = os.getenv("BATCH_COST_IR") == "1"
-- the runtimes (commands), default "lua5.4,luajit"; e.g. BATCH_COST_RT="luajit -joff"
local RTS = {}
for c in (os.getenv("BATCH_COST_RT") or "lua5.4,luajit"):gmatch("[^,]+") do RTS[#RTS + 1] = c end
local ONLY = os.getenv("BATCH_COST_ONLY") -- letters of the rows ("a" to "e") and/or "mem": only those
local PORT = tonumber(os.getenv("PAYKIT_BENCH_PORT") or 18830)
local ROOT = nginx.root()
local DIR = ROOT .. "/build/bench"
local BASE = "http://127.0.0.1:" .. PORT

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1")); local out = p:read("*a"); p:close(); return out
end

-- The measured port answers with fixed bytes (`return 200` and the canned answer, as
-- bench/layer_wire.lua's server does, so row c compares with the single call it measures: no
-- Lua in the server per request); the capture of the request bytes (for rows a and b) is made
-- on a second port, whose Moka location answers the same text from content_by_lua.
local CAP_PORT = PORT + 1
local SERVER = [[
  lua_shared_dict bench_cap 1m;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:${HTTP_PORT};
    access_log off;
    ]] .. F.fixed_locations .. [[
  }
  server {
    listen 127.0.0.1:${CAP_PORT};
    access_log off;
    default_type application/json;
    location = ${MOKA} { content_by_lua_block { require("bench.nginx_server").answer("moka") } }
    location = /__capture { content_by_lua_block { require("bench.nginx_server").capture() } }
  }
]]

local function calls(lua, scenario, mode, amount, prefix, base)
  return capture(table.concat({ prefix or "", lua, "bench/calls.lua", scenario, mode, q(base or BASE), amount, 64, "''" }, " "))
end

local function cpu_us(out)
  local ok, errs, _, cpu = out:match("result (%d+) (%d+) ([%d.]+) ([%d.]+)")
  if not ok then return nil, out:sub(1, 300) end
  if tonumber(errs) > 0 then return nil, errs .. " errors" end
  return tonumber(cpu) * 1e6 / (tonumber(ok) + tonumber(errs))
end

local function ir_of(prefix, lua, scenario, mode, amount)
  local file = DIR .. "/batch_cost.callgrind"
  capture(table.concat({ prefix or "", "valgrind --tool=callgrind --callgrind-out-file=" .. q(file), lua, "bench/calls.lua",
    scenario, mode, q(BASE), amount, 64, "''" }, " "))
  local out = capture("callgrind_annotate " .. q(file) .. " 2>/dev/null | grep -m1 'PROGRAM TOTALS'")
  -- a path: each profile is kept there, its request count appended (KEEP.1000, KEEP.2000):
  -- callgrind_annotate them, or compare the two function by function
  local keep = os.getenv("BATCH_COST_KEEP")
  if keep then os.rename(file, keep .. "." .. amount) else os.remove(file) end
  return tonumber((out:match("([%d,]+)%s+%(?[%d.]*%%?%)?%s*PROGRAM TOTALS") or out:match("([%d,]+)") or ""):gsub(",", ""), nil)
end

local ROWS = {
  { "a", "core wire_client:batch()", "bare", "core" },
  { "b", "paykit.batch of paykit.http requests", "http", "batch" },
  { "c", "paykit.batch of Moka 3D starts", "moka", "batch" },
  { "d", "paykit.batch of MoCoPay verifyPayment", "mocopay", "batch" },
  { "e", "paykit.batch of Zippy create transaction", "zippy", "batch" },
}

local function main()
  local srv = nginx.start("batchcost", SERVER, { HTTP_PORT = PORT, CAP_PORT = CAP_PORT, MOKA = F.moka_path,
    MOCOPAY = F.mocopay_path, ZIPPY = F.zippy_path, PORTS = { PORT, CAP_PORT } })
  local ok, err = pcall(function()
    os.execute("mkdir -p " .. q(DIR))
    -- the request bytes of a Moka 3D start, for the bare and http rows (as bench/bench.lua does),
    -- captured on the second port (its Host header is not sent on: libcurl and the wire client
    -- make their own)
    local cap = "http://127.0.0.1:" .. CAP_PORT
    capture("curl -s " .. q(cap .. "/__capture?arm=1"))
    calls("lua5.4", "moka", "once", 1, nil, cap)
    capture("curl -s -o " .. q(DIR .. "/moka-http.req") .. " " .. q(cap .. "/__capture?key=" .. CAP_PORT .. F.moka_path))
    capture("curl -s " .. q(cap .. "/__capture?arm=0"))
    local transport = os.getenv("PAYKIT_TRANSPORT") or "auto (default)"
    print(("64 in flight against a local nginx, %d requests a run, median of %d; transport %s; loadavg %s")
      :format(N, REPEAT, transport, capture("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", "")))
    for _, rt in ipairs(RTS) do
      for _, r in ipairs(ROWS) do
        if not ONLY or ONLY:gsub("mem", ""):find(r[1], 1, true) then
          local prefix = r[1] == "a" and "PAYKIT_TRANSPORT=wire " or nil
          local us = {}
          for k = 1, REPEAT do
            local v, why = cpu_us(calls(rt, r[3], r[4], N, prefix))
            if not v then error(rt .. " " .. r[2] .. ": " .. tostring(why), 0) end
            us[k] = v
          end
          table.sort(us)
          local line = ("  %-7s (%s) %-38s %7.1f us CPU/request (runs %s)"):format(rt, r[1], r[2], us[(REPEAT + 1) // 2],
            table.concat((function() local t = {} for i, v in ipairs(us) do t[i] = ("%.1f"):format(v) end return t end)(), " "))
          if IR then
            local m = tonumber(os.getenv("BATCH_COST_M") or 1000)
            local i1 = ir_of(prefix, rt, r[3], r[4], m)
            local i2 = ir_of(prefix, rt, r[3], r[4], 2 * m)
            if i1 and i2 then line = line .. ("; %.0f instructions/request"):format((i2 - i1) / m) end
          end
          print(line)
          io.stdout:flush()
        end
      end
    end
    if not ONLY or ONLY:find("mem", 1, true) then
      for _, rt in ipairs(RTS) do
        local out = calls(rt, "moka", "mem", MEM_N)
        local a, b, c, d = out:match("mem (%d+) (%d+) (%d+) (%d+)")
        if not a then error(rt .. " mem: " .. out:sub(1, 300), 0) end
        a, b, c = tonumber(a), tonumber(b), tonumber(c)
        print(("  %-7s %d-task Moka batch: RSS before %d KB, peak %d (+%d = %.2f KB/task), after %d (%+d KB); "
          .. "Lua heap at the end %s KB; %.1f us CPU/call")
          :format(rt, MEM_N, a, b, b - a, (b - a) / MEM_N, c, c - a, d, cpu_us(out) or -1))
        io.stdout:flush()
      end
    end
  end)
  srv:stop()
  if not ok then error(err, 0) end
end

main()
