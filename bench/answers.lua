-- The answer side of a provider call, stage by stage, the general reading ("old": the whole
-- answer decoded, kit.wire.commit + moka_wire.open, results with the decoded raw) next to the
-- fast one ("new": paykit.kit.json.pick through a compiled map, kit.wire.send, a lazily
-- decoded raw). No socket: the transport is a table answering the canned bytes of
-- bench/fixtures.lua.
--   lua5.4 bench/answers.lua [N]            every stage, CPU µs per call (os.clock over N, default 20000)
--   lua5.4 bench/answers.lua N STAGE quiet  one stage without output (for callgrind: run it with N
--                                           and with 0; the difference over N is the instructions per call)
-- Stages: moka_decode_old/new, moka_call_old/new (commit/open with decode and the same body
-- encode), moka_encode (the body encode alone), moka_result_old/new, moka_fields (the result's
-- own two tables, made alike in both: the floor of moka_result), mocopay_decode_old/new,
-- mocopay_result_old/new (the new one unpacks a kept pick: not on the real path),
-- mocopay_read_old/new (decode + payment_info + result: the whole answer side).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, only, mode = tonumber(arg[1] or 20000), arg[2], arg[3]
local F = require "bench.fixtures"
local core = require "paykit.core"
local json = require "paykit.kit.json"
local kit = require "paykit.kit"
local gateway = require "paykit.gateway"
local mwire = require "paykit.providers.moka_wire"
local pwire = require "paykit.providers.mocopay_wire"
local moka = require "paykit.providers.moka"
local unpack = table.unpack or unpack -- luacheck: ignore

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = "http://127.0.0.1:1", retry = false })
local canned = { status = 200, body = F.moka_answer, headers = {} }
gw.http = { request = function() return canned end }

local MOKA_OPTS = { exact = mwire.EXACT }
-- (the new stages need this tree's paykit; the old ones also run on an earlier one)
local NEW = json.map ~= nil
local MOKA_MAP = NEW and json.map({ "ResultCode", { "Data", "Url" }, { "Data", "CodeForHash" } }, mwire.EXACT)
local PATH = "/PaymentDealer/DoDirectPaymentThreeD"
local payload = gateway.object_of({ "Amount", "Currency" }, { gateway.decimal("27.50"), "TL" })
local tree = json.decode(F.moka_answer, MOKA_OPTS)

local PAY_OPTS = { exact = pwire.exact }
local pay_tree = json.decode(F.mocopay_answer, PAY_OPTS)
local picked = NEW and { json.pick(F.mocopay_answer, pwire.PAYMENT_MAP) }
local PAY_READ = NEW and json.read_opts(pwire.exact)

local function picked_info(kind, ...)
  if kind ~= "object" and kind ~= "array" then return nil end
  return pwire.payment_info_of(...)
end

-- as start_3d makes them now: provider in the constructor (no rehash when the result adds it)
local function moka_fields_new()
  return { status = "redirect", provider = "moka", redirect_url = F.moka_url, method = "GET", reference = "bench-0001",
    amount = "27.50", currency = "TL",
    keep = { code_for_hash = "0A1B", reference = "bench-0001", amount = "27.50", currency = "TL" } }
end

local function moka_fields()
  return { status = "redirect", redirect_url = F.moka_url, method = "GET", reference = "bench-0001", amount = "27.50",
    currency = "TL", keep = { code_for_hash = "0A1B", reference = "bench-0001", amount = "27.50", currency = "TL" } }
end

local stages = {
  moka_decode_old = function() return json.decode(F.moka_answer, MOKA_OPTS) end,
  moka_decode_new = function() return json.pick(F.moka_answer, MOKA_MAP) end,
  moka_encode = function() return core.json_encode(mwire.body(gw, PATH, payload)) end,
  moka_call_old = function() return mwire.call(gw, "start_3d", PATH, payload, false) end,
  moka_call_new = function() return mwire.call_pick(gw, "start_3d", PATH, payload, false, MOKA_MAP) end,
  moka_result_old = function()
    local t = moka_fields(); t.raw = tree
    return mwire.result(t, true)
  end,
  moka_result_new = function() return mwire.result(moka_fields_new(), true, F.moka_answer) end,
  moka_fields = function() return moka_fields() end,
  mocopay_decode_old = function() return json.decode(F.mocopay_answer, PAY_OPTS) end,
  mocopay_decode_new = function() return json.pick(F.mocopay_answer, pwire.PAYMENT_MAP) end,
  mocopay_result_old = function()
    local info = pwire.payment_info(pay_tree)
    return kit.result { status = "paid", provider = "mocopay", provider_reference = info.session_id,
      amount = pwire.amount(info.total_charged_amount, info.currency_code, "major"), currency = info.currency_code,
      code = info.status, message = "MoCoPay session " .. tostring(info.status), payment = info, raw = pay_tree }
  end,
  mocopay_read_old = function()
    local a = json.decode(F.mocopay_answer, PAY_OPTS)
    local info = pwire.payment_info(a)
    return kit.result { status = "paid", provider = "mocopay", provider_reference = info.session_id,
      amount = pwire.amount(info.total_charged_amount, info.currency_code, "major"), currency = info.currency_code,
      code = info.status, message = "MoCoPay session " .. tostring(info.status), payment = info, raw = a }
  end,
  mocopay_read_new = function()
    local info = picked_info(json.pick(F.mocopay_answer, pwire.PAYMENT_MAP))
    return gateway.result({ status = "paid", provider = "mocopay", provider_reference = info.session_id,
      amount = pwire.amount(info.total_charged_amount, info.currency_code, "major"), currency = info.currency_code,
      code = info.status, message = "MoCoPay session " .. tostring(info.status), payment = info }, true,
      F.mocopay_answer, PAY_READ)
  end,
  mocopay_result_new = function()
    local info = pwire.payment_info_of(unpack(picked, 2, 28))
    return gateway.result({ status = "paid", provider = "mocopay", provider_reference = info.session_id,
      amount = pwire.amount(info.total_charged_amount, info.currency_code, "major"), currency = info.currency_code,
      code = info.status, message = "MoCoPay session " .. tostring(info.status), payment = info }, true,
      F.mocopay_answer, PAY_READ)
  end,
}
local ORDER = { "moka_decode_old", "moka_decode_new", "moka_encode", "moka_call_old", "moka_call_new", "moka_result_old",
  "moka_result_new", "moka_fields", "mocopay_decode_old", "mocopay_decode_new", "mocopay_result_old", "mocopay_result_new", "mocopay_read_old",
  "mocopay_read_new" }

for _, name in ipairs(ORDER) do
  if (only == nil or only == "all" or only == name) and (NEW or not name:find("_new$")) then
    local fn = stages[name]
    for _ = 1, 100 do assert(fn()) end
    collectgarbage("collect")
    local c0 = os.clock()
    for _ = 1, n do fn() end
    local us = (os.clock() - c0) * 1e6 / n
    if mode ~= "quiet" and n > 0 then
      io.write(string.format("%-20s %-8s %6d calls %8.3f us CPU per call\n", name, is_jit and "LuaJIT" or "Lua 5.4", n, us))
    end
  end
end
