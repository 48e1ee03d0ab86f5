-- Where a Moka 3D start's client time goes, stage by stage (Lua level), in this process:
--   <lua> bench/breakdown.lua BASE_URL [N]     (bench/bench.lua profile runs it against its nginx)
-- Each stage runs N times alone and prints its CPU microseconds per call. The stages are the
-- pieces Moka:start_3d is made of today (validation, the body's JSON, the URL's redaction, the
-- transport, the answer's JSON, the whole call); "rest" is what the whole call costs beyond them
-- (paykit.http's request bookkeeping, the result table).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local base, n = arg[1], tonumber(arg[2] or 3000)
local F = require "bench.fixtures"
local moka = require "paykit.providers.moka"
local gateway = require "paykit.gateway"
local redact = require "paykit.redact"
local core = require "paykit.core"
local cjson = require("cjson.safe").new()

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = base, retry = false })
local req = assert(moka._payment_request(gw, F.moka_payment, true))
local body = gateway.json(gateway.put(gateway.put(gateway.object(), "PaymentDealerAuthentication", gw._auth()),
  "PaymentDealerRequest", req))
local url = base .. F.moka_path
local client = core.http_client {}
local creq = { method = "POST", url = url, headers = { "Accept: application/json", "Content-Type: application/json" },
  body = body }

local function stage(name, fn)
  fn(); fn()
  collectgarbage("collect")
  local c0 = os.clock()
  for _ = 1, n do fn() end
  local us = (os.clock() - c0) * 1e6 / n
  io.write(string.format("  %-52s %8.1f us\n", name, us))
  return us
end

io.write(string.format("Moka 3D start, %s, %s, %d calls per stage (CPU per call):\n", base,
  is_jit and "LuaJIT" or _VERSION, n))
local parts = 0
parts = parts + stage("payment_request (validation, body table)", function() moka._payment_request(gw, F.moka_payment, true) end)
parts = parts + stage("auth block (ordered object, cached CheckKey)", function() gw._auth() end)
parts = parts + stage("gateway.json (the Lua writer) of the body", function()
  gateway.json(gateway.put(gateway.put(gateway.object(), "PaymentDealerAuthentication", gw._auth()), "PaymentDealerRequest", req))
end)
if core.json_encode then
  stage("  core.json_encode (C writer) of the same body (not in the sum)", function()
    core.json_encode(gateway.put(gateway.put(gateway.object(), "PaymentDealerAuthentication", gw._auth()),
      "PaymentDealerRequest", req))
  end)
end
parts = parts + stage("redact.text(url) (paykit.http, every call)", function() redact.text(url) end)
parts = parts + stage("transport: core client:request (libcurl)", function() client:request(creq) end)
parts = parts + stage("cjson decode of the answer", function() cjson.decode(F.moka_answer) end)
local whole = stage("whole gw:start_3d", function() gw:start_3d(F.moka_payment) end)
io.write(string.format("  %-52s %8.1f us\n", "rest (paykit.http bookkeeping, result mapping)", whole - parts))

-- The same whole call, with its parts timed where they run (bench/split.lua).
io.write(require("bench.split").run(gw, n, "core"))
