-- A verified notification whose payment cannot be remembered (the store down) is answered
-- 503, so that the provider delivers it again (README "Errors", the stores' rows: "MoCoPay's
-- notification answers 503 then ... so the provider sends it again"; Moka's reply "TRY
-- LATER"). Answering it OK would lose it: the provider stops sending, and the next delivery
-- could not be told from the first. spec/zippy_spec.lua attacks Zippy's; this attacks Moka's
-- and MoCoPay's, each with a genuine signed notification and a store that does not answer.
-- Moka is not asked to confirm (no request); MoCoPay's notification is confirmed with
-- verifyPayment (a local scripted server answers it) before the payment is recorded.
local paykit = require "paykit"
local errors = require "paykit.errors"
local core = require "paykit.core"
local moka = require "paykit.providers.moka"
local mocopay_sign = require "paykit.providers.mocopay_sign"
local stub = require "spec.support.moka_stub"
local cjson = require "cjson"

local function down()
  return { get = function() return nil end, set = function() return nil, errors.transport("store_unavailable", "store down") end,
           delete = function() return true end,
           add = function() return nil, errors.transport("store_unavailable", "store down") end }
end

local function counted(opts)
  local asked = { n = 0 }
  opts.hooks = { before = function() asked.n = asked.n + 1 end }
  opts.retry = false
  return opts, asked
end

describe("a genuine notification while the store does not answer", function()
  local base
  lazy_setup(function() base = stub.start() end)
  lazy_teardown(function() stub.stop() end)

  it("is answered 503 by Moka, not OK, and is not reported", function()
    local opts, asked = counted { dealer_code = "1730", username = "u", password = "p",
      base_url = "http://127.0.0.1:9/moka", store = down() }
    local gw = assert(paykit.moka(opts))
    local cfh = "cfh-" .. core.random_hex(8)
    local body = core.form_encode { hashValue = moka.hash_3d(cfh, true), resultCode = "", resultMessage = "",
      trxCode = "ORDER-1", OtherTrxCode = "order-1" }
    local r, err, reply = gw:notification({ method = "POST", body = body }, { code_for_hash = cfh })
    assert.is_nil(r)
    assert.is_table(err)
    assert.are.equal(503, reply.status)
    assert.are_not.equal("OK", reply.body)
    assert.are.equal(0, asked.n)
    -- the control: the same notification with a working store is OK, once
    local ok_gw = assert(paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = "http://127.0.0.1:9/moka" })
    local first, okreply = ok_gw:notification({ method = "POST", body = body }, { code_for_hash = cfh })
    assert.are.equal("paid", first.status)
    assert.are.equal("OK", okreply.body)
  end)

  it("is answered 503 by MoCoPay, not OK, after verifyPayment confirmed it, and is not reported", function()
    local PATH = "/notify/mocopay"
    stub.answer("/mocopay/v1/payment/verifyPayment", cjson.encode {
      sessionId = "s-1", status = "Authorized", series = 1, pid = "12000", type = "ONE_TIME", serviceCode = "svc",
      chargedAmount = 199, failedAmount = 0, lastChargedAmount = 199, lastFailedAmount = 0,
      totalChargedAmount = 199, totalFailedAmount = 0, currencyCode = "EUR", recurrent = false, expiresIn = 60,
      transactions = {} })
    local function instance(store)
      local opts, asked = counted { api_key = "app", api_secret = "mocopay-secret", base_url = base .. "/mocopay",
        notify_url = "https://shop.example" .. PATH, store = store }
      return assert(paykit.mocopay(opts)), asked
    end
    local q = mocopay_sign.signed_query("app", "mocopay-secret", PATH, { sessionId = "s-1", status = "PaymentComplete" })
    local gw, asked = instance(down())
    local r, err, reply = gw:notification { method = "GET", path = PATH, query = q }
    assert.is_nil(r)
    assert.are.equal("store_unavailable", err.code, tostring(err))
    assert.are.equal(503, reply.status)
    assert.are_not.equal("OK", reply.body)
    assert.are.equal(1, asked.n, "verifyPayment asked once")
    -- the control: a working store takes it, OK, and the next delivery is a duplicate
    gw = instance()
    local first, okreply = gw:notification { method = "GET", path = PATH, query = q }
    assert.is_table(first, tostring(okreply))
    assert.is_false(first.duplicate)
    assert.are.equal("OK", okreply.body)
    assert.is_true(assert(gw:notification { method = "GET", path = PATH, query = q }).duplicate)
  end)

end)
