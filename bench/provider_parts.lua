-- The pieces of MoCoPay verifyPayment and Zippy create transaction (bench/layer_providers.lua's
-- calls), one at a time, for callgrind (N=2000 minus N=0 per piece; GCSTOP=1 stops the GC):
--   valgrind --tool=callgrind lua5.4 bench/provider_parts.lua 2000 <part>
-- parts: mocopay (the whole call, canned wire), moco_nohttp (the call with paykit.http replaced
-- by a table answering at once), moco_nohttp_small (the same with a one-member answer),
-- moco_sign (the C signer), moco_send (kit.wire.send), moco_http (paykit.http:request alone),
-- moco_url (kit.wire.url with a query), moco_pick / moco_info / moco_infoonly (the positional
-- pick, with payment_info_of, payment_info_of alone), moco_infomap (INFO_MAP's table),
-- moco_result, moco_amount, nothing (the loop), moco_empty; zippy (the whole call), zippy_check
-- (core.zippy_transaction), zippy_claim, zippy_sign (the OAuth header), zippy_decode (kit.json),
-- zippy_cdecode / zippy_cdecode0 (core.json_decode with and without options), zippy_msg,
-- zippy_send (kit.wire.send), zippy_commit (kit.wire.commit).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, part = tonumber(arg[1] or 20000), arg[2] or "mocopay"
local F = require "bench.fixtures"
local kwire = require "paykit.kit.wire"
local gateway = require "paykit.gateway"
local kjson = require "paykit.kit.json"

local canned = F.canned

local c = assert(require("paykit.providers.mocopay").new { api_key = "bench-key",
  api_secret = "bench-secret-not-secret", base_url = "http://127.0.0.1:1", amount_unit = "major", retry = false })
c.http.wire = canned(F.mocopay_answer)
local mwire = require "paykit.providers.mocopay_wire"
local z = assert(require("paykit.providers.zippy").new { consumer_key = "bench-consumer",
  consumer_secret = "bench-consumer-secret", base_url = "http://127.0.0.1:1", notice_keys = { [0] = "bench-notice-key" },
  retry = false })
z.http.wire = canned(F.zippy_answer)

local parts = {}
parts.mocopay = function() return c:verify_payment(F.mocopay_session) end
parts.moco_sign = function() return c.signer:verify(c.verify_signed_path, "sessionId", F.mocopay_session, c.header_prefix) end
parts.moco_send = function()
  local header = c.signer:verify(c.verify_signed_path, "sessionId", F.mocopay_session, c.header_prefix)
  return kwire.send(c, "verifyPayment", { method = "POST", path = c.verify_path, query = { { "sessionId", F.mocopay_session } },
    body = "", idempotent = true, headers = { Signature = header }, own_headers = true })
end
parts.moco_pick = function() return kjson.pick(F.mocopay_answer, mwire.PAYMENT_MAP) end
local function info_of(_, ...) return mwire.payment_info_of(...) end
parts.moco_info = function() return info_of(kjson.pick(F.mocopay_answer, mwire.PAYMENT_MAP)) end
local info = info_of(kjson.pick(F.mocopay_answer, mwire.PAYMENT_MAP))
local RO = kjson.read_opts(mwire.exact)
parts.moco_result = function()
  return gateway.result({
    status = mwire.map_status(info.status), provider = "mocopay", provider_reference = info.session_id,
    amount = mwire.amount(info.total_charged_amount, info.currency_code, "major"),
    currency = info.currency_code, code = info.status,
    message = "MoCoPay session " .. tostring(info.status), payment = info, raw = nil,
  }, true, F.mocopay_answer, RO)
end
parts.moco_amount = function() return mwire.amount(info.total_charged_amount, info.currency_code, "major") end
parts.moco_http = function()
  return c.http:request { method = "POST", url = "http://127.0.0.1:1/v1/payment/verifyPayment?sessionId=sess-bench-0001",
    body = "", idempotent = true, headers = { Signature = "x", Accept = "application/json" }, op = "mocopay.verifyPayment", own_headers = true }
end
parts.moco_url = function() return kwire.url(c, { path = c.verify_path, query = { { "sessionId", F.mocopay_session } } }) end
local unpack = table.unpack or unpack
local picked = { n = select("#", kjson.pick(F.mocopay_answer, mwire.PAYMENT_MAP)), kjson.pick(F.mocopay_answer, mwire.PAYMENT_MAP) }
parts.moco_infoonly = function() return info_of(unpack(picked, 1, picked.n)) end
parts.moco_empty = function() return info_of(1) end
parts.nothing = function() end
parts.moco_infomap = function() local _, t = kjson.pick(F.mocopay_answer, mwire.INFO_MAP); return mwire.payment_info_fast(t) end
parts.zippy = function() return z:create_transaction(F.zippy_transaction) end

local zreq = require "paykit.providers.zippy_request"
local zwire = require "paykit.providers.zippy_wire"
parts.zippy_check = function() return require("paykit.core").zippy_transaction(F.zippy_transaction, z.defaults, z.good_urls, zreq.PRICED) end
parts.zippy_claim = function() return zreq.claim_reference(z.references, F.zippy_transaction) end
parts.zippy_sign = function() return z.sign("POST", "http://127.0.0.1:1/transactions") end
local ZRO = kjson.read_opts(zwire.exact)
parts.zippy_decode = function() return kjson.decode(F.zippy_answer, ZRO) end
local cdecode = require("paykit.core").json_decode
parts.zippy_cdecode = function() return cdecode(F.zippy_answer, ZRO) end
parts.zippy_cdecode0 = function() return cdecode(F.zippy_answer) end
local zans = kjson.decode(F.zippy_answer, ZRO)
parts.zippy_msg = function() return zwire.message_from(z, zans) end
local ztext = require("paykit.core").zippy_transaction(F.zippy_transaction, z.defaults, z.good_urls, zreq.PRICED)
parts.zippy_commit = function() return kwire.commit(z, "create_transaction", { method = "POST", path = "/transactions", body = ztext,
    headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, idempotent = false,
    own_headers = true }) end
parts.zippy_send = function() return kwire.send(z, "create_transaction", { method = "POST", path = "/transactions", body = ztext,
    headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, idempotent = false,
    own_headers = true }) end
local c2 = assert(require("paykit.providers.mocopay").new { api_key = "bench-key",
  api_secret = "bench-secret-not-secret", base_url = "http://127.0.0.1:1", amount_unit = "major", retry = false })
local RES = { status = 200, headers = { ["Content-Type"] = "application/json" }, body = F.mocopay_answer }
c2.http = { request = function() return RES end }
parts.moco_nohttp = function() return c2:verify_payment(F.mocopay_session) end
local c3 = assert(require("paykit.providers.mocopay").new { api_key = "bench-key",
  api_secret = "bench-secret-not-secret", base_url = "http://127.0.0.1:1", amount_unit = "major", retry = false })
local RES3 = { status = 200, headers = { ["Content-Type"] = "application/json" }, body = '{"sessionId":"sess-bench-0001"}' }
c3.http = { request = function() return RES3 end }
parts.moco_nohttp_small = function() return c3:verify_payment(F.mocopay_session) end
local fn = assert(parts[part], "no such part")
for _ = 1, 200 do fn() end
collectgarbage("collect")
if os.getenv("GCSTOP") then collectgarbage("stop") end
for _ = 1, n do fn() end
