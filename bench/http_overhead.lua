-- What paykit.http adds above the core client it uses (issue 11): CPU µs and user-space
-- instructions per call, one keep-alive connection to a local nginx (1 worker), http, Lua 5.4
-- and LuaJIT. Rows:
--   bare   core.wire_client():request(req), the request paykit.http would send
--   http   paykit.http.new{<a provider's options>}:request{...} as paykit.kit.wire.commit
--          calls it (method, url, body, headers map, op, idempotent; no logger, no hooks,
--          default retry policy, timeouts, correlation header)
--   own    the same with own_headers = true (the call's headers table is its own: no copy)
-- Like bare's, the request table (and its headers) of http and own is made once and handed to
-- every call: the per-call tables paykit.kit.wire.send makes are the provider layer's cost
-- (bench/layer.lua counts them), not paykit.http's (made here per call they added ~4k
-- instructions on Lua 5.4 to what this bench put on paykit.http).
-- CPU: os.clock over N calls (after a warm-up) in a child process of its own. Instructions:
-- callgrind's instruction count (perf has no hardware counters
-- on this machine) of a child making 2500 calls minus one making 500, divided
-- by the difference (start-up cancels out).
-- Run (under nsrun: it starts nginx): lua5.4 bench/http_overhead.lua [calls] [rounds]
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local BODY = '{"PaymentDealerAuthentication":{"DealerCode":"1730","Username":"bench","Password":"bench-pass",'
  .. '"CheckKey":"' .. string.rep("a", 64) .. '"},"PaymentDealerRequest":{"CardHolderFullName":"Ali Yilmaz",'
  .. '"CardNumber":"4111111111111111","ExpMonth":"12","ExpYear":"2031","CvcNumber":"123","Amount":27.50,'
  .. '"Currency":"TL","InstallmentNumber":1,"ClientIP":"203.0.113.7","OtherTrxCode":"ORD-bench-1",'
  .. '"RedirectUrl":"https://shop.example/back?o=1","Software":"paykit","ReturnHash":1}}'
local ANSWER = '{"Data":{"Url":"https://3d.example/x","CodeForHash":"ABCD"},"ResultCode":"Success","ResultMessage":"","Exception":null}'

if arg[1] == "child" then
  -- <lua> bench/http_overhead.lua child KIND URL CALLS
  local kind, url, calls = arg[2], arg[3], tonumber(arg[4])
  local core = require "paykit.core"
  local call
  if kind == "bare" then
    local c = core.wire_client {}
    local req = { method = "POST", url = url, body = BODY, idempotent = false, timeout = 30000, connect_timeout = 10000,
      headers = { ["Content-Type"] = "application/json", Accept = "application/json",
                  ["X-Correlation-Id"] = core.uuid4() } }
    call = function() local r = c:request(req); return r and r.status == 200 end
  else
    local http = require "paykit.http"
    -- the options paykit.kit gives http.new: every OPTIONS key, nil unless set
    local t = http.new { transport = "wire" }
    -- the request paykit.kit.wire.send hands on (it makes one per call, in the provider layer)
    local req = { method = "POST", url = url, body = BODY, op = "moka.start_3d", idempotent = false,
                  own_headers = kind == "own" or nil,
                  headers = { ["Content-Type"] = "application/json", Accept = "application/json" } }
    call = function() local r = t:request(req); return r and r.status == 200 end
  end
  for _ = 1, 200 do assert(call(), "a warm-up call failed") end
  local clock = os.clock
  local c0 = clock()
  for _ = 1, calls do if not call() then error("a call failed") end end
  print(("result %.6f"):format(clock() - c0))
  os.exit(0)
end

local CALLS, ROUNDS = tonumber(arg[1]) or 20000, tonumber(arg[2]) or 3
local INS_SMALL, INS_BIG = 500, 2500 -- calls of the two callgrind children
local nginx = require "paykit.sandbox.nginx"
local PORT = tonumber(os.getenv("PAYKIT_BENCH_PORT") or "") or 18970
local answer = ANSWER:gsub("\\", "\\\\"):gsub("'", "\\'")
local srv = nginx.start("bench-http-overhead", [[
  server { listen 127.0.0.1:${HTTP}; keepalive_requests 10000000;
    location / { default_type application/json; content_by_lua_block {
      ngx.req.read_body(); ngx.print(']] .. answer .. [[') } } }
]], { HTTP = PORT, PORTS = { PORT }, WORKERS = 1 })
local url = "http://127.0.0.1:" .. PORT .. "/PaymentDealer/DoDirectPaymentThreeD"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1"); local out = p:read("*a"); p:close(); return out
end
local function cpu(lua, kind)
  local out = run(("%s bench/http_overhead.lua child %s %s %d"):format(lua, kind, url, CALLS))
  local s = out:match("result (%S+)")
  if not s then srv:stop(); error(out) end
  return tonumber(s) / CALLS * 1e6
end
local function instructions(lua, kind, calls)
  local out = run(("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s bench/http_overhead.lua child %s %s %d")
    :format(lua, kind, url, calls))
  local n = out:match("Collected : (%d+)")
  if not n then srv:stop(); error(out) end
  return tonumber(n)
end
local function median(t) table.sort(t); return t[math.ceil(#t / 2)] end

local f = io.open("/proc/loadavg"); print("loadavg before " .. f:read("*l")); f:close()
print(("%d calls per child, median of %d rounds"):format(CALLS, ROUNDS))
print(("%-8s %-6s %10s %14s"):format("runtime", "row", "CPU us", "instr/call"))
local results = {}
for _, lua in ipairs { "lua5.4", "luajit" } do
  for _, kind in ipairs { "bare", "http", "own" } do results[lua .. kind] = { us = {}, ins = {} } end
end
for _ = 1, ROUNDS do
  for _, lua in ipairs { "lua5.4", "luajit" } do
    for _, kind in ipairs { "bare", "http", "own" } do
      local r = results[lua .. kind]
      r.us[#r.us + 1] = cpu(lua, kind)
      if #r.ins == 0 then -- deterministic enough: once
        r.ins[1] = (instructions(lua, kind, INS_BIG) - instructions(lua, kind, INS_SMALL)) / (INS_BIG - INS_SMALL)
      end
    end
  end
end
for _, lua in ipairs { "lua5.4", "luajit" } do
  local b = results[lua .. "bare"]
  local bu, bi = median(b.us), median(b.ins)
  print(("%-8s %-6s %10.1f %14.0f"):format(lua, "bare", bu, bi))
  for _, kind in ipairs { "http", "own" } do
    local h = results[lua .. kind]
    local hu, hi = median(h.us), median(h.ins)
    print(("%-8s %-6s %10.1f %14.0f   (+%.1f us, +%.0f instructions)"):format(lua, kind, hu, hi, hu - bu, hi - bi))
  end
end
f = io.open("/proc/loadavg"); print("loadavg after  " .. f:read("*l")); f:close()
srv:stop()
