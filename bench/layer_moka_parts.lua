-- The Moka layer (bench/layer.lua's call) split into its parts, each alone in a loop, for
-- callgrind (run it with N and with 0: the difference over N is the part's instructions per call):
--   lua5.4 bench/layer_moka_parts.lua N PART
-- PART: full (gw:start_3d, as bench/layer.lua), body (moka_request.payment_body), write (the
-- compiled shape's write alone), callpick (moka_wire.call_pick with the body already written),
-- send (kit.wire.send_json_text alone), pick (kit.json.pick of the canned answer), result (the
-- result and keep tables with gateway.lazy_result), tables (the same tables without it).
-- The transport is replaced by the canned answer, as in bench/layer.lua (no socket).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, part = tonumber(arg[1] or 20000), arg[2] or "full"
local F = require "bench.fixtures"
local moka = require "paykit.providers.moka"
local R = require "paykit.providers.moka_request"
local wire = require "paykit.providers.moka_wire"
local kwire = require "paykit.kit.wire"
local kit = require "paykit.kit"
local gateway = require "paykit.gateway"
local take_ids = require("paykit.errors").take_ids

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = "http://127.0.0.1:1", retry = false })
local answer = { status = 200, body = F.moka_answer, headers = {} }
gw.http = { request = function() return answer end }
local p, path = F.moka_payment, "/PaymentDealer/DoDirectPaymentThreeD"
assert(gw:start_3d(p), "the canned answer did not map")
local START_3D = kit.json.map({ "ResultCode", { "Data", "Url" }, { "Data", "CodeForHash" } }, wire.EXACT)
local body = assert(R.payment_body(gw, p, true, path))
local prefix, shape, pick = gw._body_prefix(path), R.SHAPES.card3d, kit.json.pick

local function tables()
  local keep = { code_for_hash = "C", reference = "r", amount = "27.50", currency = "TL" }
  local request_id, correlation_id = take_ids()
  return { status = "redirect", provider = "moka", redirect_url = "u", method = "GET", reference = "r",
    amount = "27.50", currency = "TL", keep = keep, request_id = request_id, correlation_id = correlation_id }
end
local PARTS = {
  full = function() return gw:start_3d(p) end,
  body = function() return R.payment_body(gw, p, true, path) end,
  write = function() return shape:write(p, prefix, gw.clock, gw.currency, gw.client_ip, gw.software) end,
  callpick = function() return wire.call_pick(gw, "start_3d", path, body, false, START_3D, true) end,
  send = function() return kwire.send_json_text(gw, "start_3d", path, body, false) end,
  pick = function() return pick(F.moka_answer, START_3D) end,
  result = function() return gateway.lazy_result(tables(), F.moka_answer, wire.READ_OPTS, true) end,
  tables = tables,
}
local f = assert(PARTS[part], "unknown part " .. tostring(part))
collectgarbage("collect")
for _ = 1, n do f() end
