-- The request side of a Moka 3D start alone: validation and the body text (no transport, no
-- answer). "lua" runs the Lua reference path (moka_request.payment + moka_wire.body + the kit's
-- JSON writer), "fast" the path start_3d takes (moka_request.payment_body: one core shape
-- call when the input fits the compiled shape).
--   lua5.4 bench/shape.lua [N] [lua|fast] [quiet]   CPU µs per call (os.clock over N calls)
-- For callgrind: run with N and with 0 (quiet); the difference over N is instructions per call.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, which, mode = tonumber(arg[1] or 20000), arg[2] or "fast", arg[3]
local F = require "bench.fixtures"
local moka = require "paykit.providers.moka"
local R = require "paykit.providers.moka_request"
local wire = require "paykit.providers.moka_wire"
local json = require "paykit.kit.json"

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = "http://127.0.0.1:1", retry = false })
local path = "/PaymentDealer/DoDirectPaymentThreeD"
local p = F.moka_payment

local function lua_path()
  local req, info = R.payment(gw, p, true)
  return json.encode(wire.body(gw, path, req)), info
end
local call = lua_path
if which == "fast" then
  call = function()
    local body, amount, currency = R.payment_body(gw, p, true, path)
    if type(body) ~= "string" then body = json.encode(wire.body(gw, path, body)) end
    return body, amount, currency
  end
end
assert(call() == lua_path(), "the two paths wrote different bodies")

collectgarbage("collect")
local c0 = os.clock()
for _ = 1, n do call() end
local dt = os.clock() - c0
if mode ~= "quiet" and n > 0 then
  io.write(string.format("%s: moka start_3d request side (%s), %d calls: %.2f us CPU per call\n",
    is_jit and "LuaJIT" or _VERSION, which, n, dt * 1e6 / n))
end
