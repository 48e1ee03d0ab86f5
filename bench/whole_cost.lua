-- User instructions per whole provider call (Moka 3D start, MoCoPay verifyPayment, Zippy create
-- transaction) over one keep-alive connection, on Lua 5.4 and LuaJIT: callgrind of a run of 2M
-- calls minus a run of M, divided by M, so start-up and the first calls are not counted. The
-- server is a local nginx answering the benchmark's canned answers with `return 200` (no Lua per
-- request, as bench/batch_cost.lua's). Run under nsrun, from the repository root:
--   nsrun NAME lua5.4 bench/whole_cost.lua [M] [runtimes] [scenarios]
-- (defaults 1000, "lua5.4,luajit", "moka,mocopay,zippy"); WHOLE_COST_KEEP=dir keeps the
-- profiles (dir/<runtime>-<scenario>.<calls>) for callgrind_annotate; WHOLE_COST_PORT (18990).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local F = require "bench.fixtures"

local M = tonumber(arg[1] or 1000)
local RTS, SCS = {}, {}
for c in (arg[2] or "lua5.4,luajit"):gmatch("[^,]+") do RTS[#RTS + 1] = c end
for c in (arg[3] or "moka,mocopay,zippy"):gmatch("[^,]+") do SCS[#SCS + 1] = c end
local PORT = tonumber(os.getenv("WHOLE_COST_PORT") or 18990)
local KEEP = os.getenv("WHOLE_COST_KEEP")
local SERVER = [[
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:${HTTP_PORT};
    access_log off;
    ]] .. F.fixed_locations .. [[
  }
]]

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1")); local out = p:read("*a"); p:close(); return out
end

-- the user instructions of one run of n calls (every call must map its answer as expected)
local function instructions(rt, scenario, n)
  local file = os.tmpname()
  local out = capture(("valgrind --tool=callgrind --callgrind-out-file=%s %s bench/calls.lua %s count %s %d")
    :format(q(file), rt, scenario, q("http://127.0.0.1:" .. PORT), n))
  local ok, errs = out:match("result (%d+) (%d+)")
  if tonumber(ok) ~= n or tonumber(errs) ~= 0 then
    os.remove(file)
    error(("%s %s: %s calls of %d mapped as expected: %s"):format(rt, scenario, tostring(ok), n, out:sub(-300)), 0)
  end
  local total = capture("callgrind_annotate " .. q(file) .. " 2>/dev/null | grep -m1 'PROGRAM TOTALS'")
  if KEEP then os.rename(file, ("%s/%s-%s.%d"):format(KEEP, rt:gsub("%W", "_"), scenario, n)) else os.remove(file) end
  return tonumber(((total:match("([%d,]+)") or ""):gsub(",", "")))
end

local srv = nginx.start("wholecost", SERVER, { HTTP_PORT = PORT, MOKA = F.moka_path, MOCOPAY = F.mocopay_path,
  ZIPPY = F.zippy_path, PORTS = { PORT } })
local ok, err = pcall(function()
  print(("whole provider calls, one keep-alive connection, callgrind: %d calls minus %d"):format(2 * M, M))
  for _, rt in ipairs(RTS) do
    for _, sc in ipairs(SCS) do
      local a, b = instructions(rt, sc, M), instructions(rt, sc, 2 * M)
      if not (a and b) then error(rt .. " " .. sc .. ": no callgrind totals", 0) end
      print(("  %-8s %-8s %8.0f instructions per call"):format(rt, sc, (b - a) / M))
      io.stdout:flush()
    end
  end
end)
srv:stop()
if not ok then io.stderr:write(tostring(err), "\n"); os.exit(1) end
