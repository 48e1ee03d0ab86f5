-- The bare transport through paykit.http, libcurl next to wire: client CPU µs per call and
-- calls/s, one keep-alive connection, http and https, Lua 5.4 and LuaJIT, interleaved rounds
-- (median and spread of at least 3). The same request for every row: a Moka-sized JSON POST
-- (the Moka 3D start's body from bench/fixtures.lua) through `paykit.http.new{transport = T}`
-- `:request{...}` (correlation id, headers copy, hooks and logging as a provider call has
-- them), and through the core client alone for reference. Run: `bench/run http` or
--   lua5.4 bench/http_transport.lua [seconds] [rounds]
-- (one child process per row, so each row's CPU time is its own; nginx 1 worker on 127.0.0.1).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local fixtures = require "bench.fixtures"

local BODY = '{"PaymentDealerAuthentication":{"DealerCode":"1730","Username":"bench","Password":"bench-pass",'
  .. '"CheckKey":"' .. string.rep("a", 64) .. '"},"PaymentDealerRequest":{"CardHolderFullName":"Ali Yilmaz",'
  .. '"CardNumber":"4111111111111111","ExpMonth":"12","ExpYear":"2031","CvcNumber":"123","Amount":27.50,'
  .. '"Currency":"TL","InstallmentNumber":1,"ClientIP":"203.0.113.7","OtherTrxCode":"ORD-bench-1",'
  .. '"RedirectUrl":"https://shop.example/back?o=1","Software":"paykit","ReturnHash":1}}'

if arg[1] == "child" then
  -- <lua> bench/http_transport.lua child KIND URL SECONDS CAFILE
  local kind, url, seconds, cafile = arg[2], arg[3], tonumber(arg[4]), arg[5]
  if cafile == "" then cafile = nil end
  local core = require "paykit.core"
  local call
  if kind == "core-curl" or kind == "core-wire" then
    local c = (kind == "core-wire" and core.wire_client or core.http_client) { cafile = cafile }
    local req = { method = "POST", url = url, body = BODY,
      headers = { "Content-Type: application/json", "Accept: application/json" } }
    call = function() local r = c:request(req); return r and r.status == 200 and r.body == fixtures.moka_answer end
  else
    local t = require("paykit.http").new { transport = kind, cafile = cafile }
    local req = { method = "POST", url = url, body = BODY, json = false, op = "bench",
      headers = { ["Content-Type"] = "application/json", Accept = "application/json" } }
    call = function() local r = t:request(req); return r and r.status == 200 and r.body == fixtures.moka_answer end
    assert(call())
    assert((kind == "wire") == (t.wire and true or false), "the transport did not use " .. kind)
  end
  assert(call(), "the first call failed")
  local clock, now = os.clock, core.monotonic
  local ok, bad = 0, 0
  local c0, w0 = clock(), now()
  while now() - w0 < seconds do
    for _ = 1, 50 do if call() then ok = ok + 1 else bad = bad + 1 end end
  end
  print(("result %d %d %.6f %.6f"):format(ok, bad, now() - w0, clock() - c0))
  os.exit(0)
end

local SECONDS, ROUNDS = tonumber(arg[1]) or 1, math.max(3, tonumber(arg[2]) or 3)
local nginx = require "paykit.sandbox.nginx"
local PORT = tonumber(os.getenv("PAYKIT_BENCH_PORT") or "") or 18960
local DIR = "build/bench/http_transport"

local function sh(cmd) local ok, _, code = os.execute(cmd); if type(ok) == "number" then return ok == 0 end; return ok and code == 0 end
assert(sh("mkdir -p " .. DIR))
if not io.open(DIR .. "/server.crt") then
  assert(sh("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=127.0.0.1' -addext "
    .. "'subjectAltName=IP:127.0.0.1' -keyout " .. DIR .. "/server.key -out " .. DIR .. "/server.crt >/dev/null 2>&1"))
end
local root = io.popen("pwd"):read("*l")
local CA = root .. "/" .. DIR .. "/server.crt"
local answer = fixtures.moka_answer:gsub("\\", "\\\\"):gsub("'", "\\'")
local LOC = [[
    keepalive_requests 1000000;
    location / { default_type application/json; content_by_lua_block {
      ngx.req.read_body(); ngx.print(']] .. answer .. [[') } }
]]
local srv = nginx.start("bench-http-transport", [[
  server { listen 127.0.0.1:${HTTP}; ]] .. LOC .. [[ }
  server { listen 127.0.0.1:${HTTPS} ssl; ssl_certificate ${DIR}/server.crt; ssl_certificate_key ${DIR}/server.key;
    ]] .. LOC .. [[ }
]], { HTTP = PORT, HTTPS = PORT + 1, DIR = root .. "/" .. DIR, PORTS = { PORT, PORT + 1 }, WORKERS = 1 })

local function loadavg() local f = io.open("/proc/loadavg"); local s = f:read("*l"); f:close(); return s:match("^(%S+ %S+ %S+)") end

local rows = {}
for _, scheme in ipairs { "http", "https" } do
  local url = scheme .. "://127.0.0.1:" .. (scheme == "http" and PORT or PORT + 1) .. "/PaymentDealer/DoDirectPaymentThreeD"
  for _, rt in ipairs { "lua5.4", "luajit" } do
    for _, kind in ipairs { "curl", "wire", "core-curl", "core-wire" } do
      rows[#rows + 1] = { scheme = scheme, rt = rt, kind = kind, url = url, runs = {} }
    end
  end
end

local before = loadavg()
for _ = 1, ROUNDS do
  for _, r in ipairs(rows) do
    local p = io.popen(("env -u PAYKIT_TRANSPORT %s bench/http_transport.lua child %s '%s' %s '%s' 2>&1"):format(
      r.rt, r.kind, r.url, SECONDS, r.scheme == "https" and CA or ""))
    local out = p:read("*a"); p:close()
    local ok, bad, wall, cpu = out:match("result (%d+) (%d+) (%S+) (%S+)")
    if not ok then srv:stop(); error(r.rt .. " " .. r.kind .. ": " .. out) end
    ok, bad, wall, cpu = tonumber(ok), tonumber(bad), tonumber(wall), tonumber(cpu)
    if bad > 0 then srv:stop(); error(r.rt .. " " .. r.kind .. ": " .. bad .. " calls failed") end
    r.runs[#r.runs + 1] = { rate = ok / wall, us = cpu / ok * 1e6 }
  end
end
srv:stop()

local function median(list, key)
  local v = {}
  for i, x in ipairs(list) do v[i] = x[key] end
  table.sort(v)
  local n = #v
  local m = n % 2 == 1 and v[(n + 1) / 2] or (v[n / 2] + v[n / 2 + 1]) / 2
  return m, (v[n] - v[1]) / m
end

local NAMES = { curl = "paykit.http, libcurl", wire = "paykit.http, wire", ["core-curl"] = "core.http_client alone",
  ["core-wire"] = "core.wire_client alone" }
print(("loadavg before %s, after %s; %d rounds of %s s, median (spread)"):format(before, loadavg(), ROUNDS, SECONDS))
print("| scheme | runtime | client | calls/s | spread | client CPU µs/call |")
print("|---|---|---|---:|---:|---:|")
for _, r in ipairs(rows) do
  local rate, sp = median(r.runs, "rate")
  local us = median(r.runs, "us")
  print(("| %s | %s | %s | %.0f | %.0f%% | %.1f |"):format(r.scheme, r.rt, NAMES[r.kind], rate, sp * 100, us))
end
