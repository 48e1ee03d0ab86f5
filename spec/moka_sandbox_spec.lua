-- Moka end to end against the local sandbox over real HTTP.
-- Run with PAYKIT_TEST_SANDBOX_PORT set to a port of your own.
local paykit = require "paykit"
local moka = require "paykit.providers.moka"
local core = require "paykit.core"
local sb = require "spec.support.sandbox"

local base
local APPROVE, DECLINE_005, SERVER_ERROR = "4111111111111111", "4000000000100505", "4000000000300006"

local function gw(extra)
  local o = { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka",
              client_ip = "203.0.113.7", retry = false }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(paykit.moka(o))
end

local seq = 0
local function ref()
  seq = seq + 1
  return "SPEC-" .. os.time() .. "-" .. seq .. "-" .. math.random(1e6)
end

local function card(number)
  return { holder = "Ali Yilmaz", number = number or APPROVE, exp_month = "12", exp_year = "2031", cvc = "123" }
end

-- finish a 3D page through the sandbox's admin call; returns the posted fields
local function finish_3d(url, action, code)
  local trx = url:match("threeDTrxCode=([%w%-]+)")
  local res = sb.post_json("/moka/_sandbox/3d/complete", { threeDTrxCode = trx, action = action, code = code })
  assert.equal(200, res.status)
  return res.json.Fields
end

describe("moka against the sandbox", function()
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("runs a 3D purchase to paid, confirmed by status", function()
    local g = gw()
    local r = assert(g:purchase { amount = "27.50", card = card(), redirect_url = "https://shop.example/r", reference = ref() })
    assert.equal("redirect", r.status)
    assert.truthy(r.redirect_url:find("threeDTrxCode=", 1, true))
    local fields = finish_3d(r.redirect_url, "approve")
    local done = assert(g:complete(fields, r.keep, { confirm = true }))
    assert.equal("paid", done.status)
    assert.equal("27.50", done.amount)
    assert.truthy(done.provider_reference:find("^ORDER%-"))
    local st = assert(g:status(r.keep.reference))
    assert.equal("paid", st.status)
    assert.equal("27.50", st.amount)
  end)

  it("maps a 3D bank decline to a failed result", function()
    local g = gw()
    local r = assert(g:start_3d { amount = "10.00", card = card(DECLINE_005), redirect_url = "https://shop.example/r", reference = ref() })
    local done = assert(g:complete(finish_3d(r.redirect_url, "approve"), r.keep))
    assert.equal("failed", done.status)
    assert.equal("moka.bank.transaction_not_open_to_cardholder", done.code)
  end)

  it("refuses a 3D return whose hash was tampered with", function()
    local g = gw()
    local r = assert(g:start_3d { amount = "10.00", card = card(), redirect_url = "https://shop.example/r", reference = ref() })
    local fields = finish_3d(r.redirect_url, "decline")
    fields.hashValue = moka.hash_3d(r.keep.code_for_hash, true):sub(1, 60) .. "abcd"
    local done, err = g:complete(fields, r.keep)
    assert.is_nil(done); assert.equal("signature", err.kind)
  end)

  it("pays directly, captures a pre-auth, refunds and reads the details", function()
    local g = gw()
    local reference = ref()
    local r = assert(g:pay { amount = "100.00", card = card(), reference = reference, pre_auth = true })
    assert.equal("authorized", r.status)
    local c = assert(g:capture { order_id = r.provider_reference, amount = "100.00" })
    assert.equal("paid", c.status)
    local f = assert(g:refund { reference = reference, amount = "40.00" })
    assert.equal("pending", f.status)
    assert.truthy(f.refund_id)
    local d = assert(g:payment_details { reference = reference })
    assert.truthy(d.PaymentDetail)
  end)

  it("voids a same-day payment", function()
    local g = gw()
    local reference = ref()
    assert.equal("paid", assert(g:pay { amount = "5.00", card = card(), reference = reference }).status)
    assert.equal("voided", assert(g:void { reference = reference }).status)
    assert.equal("voided", assert(g:status(reference)).status)
  end)

  it("returns a direct bank decline as a failed result, not an error", function()
    local r, err = gw():pay { amount = "5.00", card = card(DECLINE_005), reference = ref() }
    assert.is_nil(err)
    assert.equal("failed", r.status)
    assert.equal("005", r.provider_code)
  end)

  it("approves and undoes a pool payment", function()
    local g = gw()
    local reference = ref()
    assert(g:pay { amount = "9.00", card = card(), reference = reference, pool = true })
    assert.equal("paid", assert(g:approve_pool { reference = reference }).status)
    assert.is_true(assert(g:payment_details { reference = reference }).PaymentDetail.IsPoolPaymentApproved)
    assert.equal("pending", assert(g:undo_pool { reference = reference }).status)
    assert.is_false(assert(g:payment_details { reference = reference }).PaymentDetail.IsPoolPaymentApproved)
  end)

  it("maps provider refusals to stable errors", function()
    local _, err = gw { password = "wrong" }:pay { amount = "5.00", card = card(), reference = ref() }
    assert.equal("config", err.kind); assert.equal("moka.invalid_auth_request", err.code)
    _, err = gw { dealer_code = "9999" }:bin_info("526911")
    assert.equal("moka.invalid_account", err.code)
    _, err = gw { dealer_code = "1731", username = "restricted", password = "restricted-pass" }
      :pay { amount = "5.00", card = card(), reference = ref(), pre_auth = true }
    assert.equal("moka.pre_auth_forbidden", err.code)
    _, err = gw():void { reference = "NO-SUCH-" .. ref() }
    assert.equal("moka.payment_not_found", err.code)
  end)

  it("reports an HTTP 500 as a provider error with an unknown outcome", function()
    local _, err = gw():pay { amount = "5.00", card = card(SERVER_ERROR), reference = ref() }
    -- ISSUE9: the kit's one HTTP vocabulary (was moka.http_500); a charge is never retried
    assert.equal("provider", err.kind); assert.equal("server_error", err.code); assert.is_false(err.retryable)
  end)

  it("reads BIN information and the installment table", function()
    local g = gw()
    local bin = assert(g:bin_info("526911"))
    assert.truthy(bin.BankName)
    local t = assert(g:installments { bin = "526911", amount = "100.00" })
    assert.truthy(t.BankPaymentInstallmentInfoList)
  end)

  it("stores a card, pays with its token, lists and removes it", function()
    local g = gw()
    local code = ref()
    local c = card(); c.cvc = nil
    local added = assert(g:add_customer { customer_code = code, first_name = "Ali", last_name = "Yilmaz", card = c, card_name = "main" })
    local token = added.Card and added.Card.CardToken
    assert.truthy(token)
    local r = assert(g:pay { amount = "3.00", card_token = token, reference = ref() })
    assert.equal("paid", r.status)
    local list = assert(g:list_cards { customer_code = code })
    assert.equal(1, #list.CardList)
    assert.equal("411111", list.CardList[1].CardNumberFirstSix)
    assert(g:remove_card { card_token = token })
    assert.equal(0, #assert(g:list_cards { customer_code = code }).CardList)
  end)

  it("receives the sandbox's notification and answers OK", function()
    local g = gw()
    local r = assert(g:start_3d { amount = "12.00", card = card(), redirect_url = "https://shop.example/r", reference = ref() })
    local fields = finish_3d(r.redirect_url, "approve")
    local req = { method = "POST", body = core.form_encode(fields) }
    local n, reply = g:notification(req, { code_for_hash = r.keep.code_for_hash })
    assert.equal("paid", n.status); assert.equal("OK", reply.body)
    assert.is_true(assert(g:notification(req, { code_for_hash = r.keep.code_for_hash })).duplicate)
  end)
end)
