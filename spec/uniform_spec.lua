-- The uniform flow: the same names (reference, amount, currency, return_url, notify_url) start a
-- payment with every provider, and the buyer comes back to return_url; over real HTTP against
-- the sandbox.
local paykit = require "paykit"
local core = require "paykit.core"
local sb = require "spec.support.sandbox"

describe("the uniform flow", function()
  local base
  local RETURN = "https://shop.example/back?order=7"
  local NOTIFY = "http://127.0.0.1:9/notify" -- never reached in these specs

  -- a sandbox call that stands in for the buyer's click
  local function magic(path, body)
    local res = sb.post_json(path, body)
    assert.are.equal(200, res.status, res.body)
    return res.json
  end

  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  local function reference() return "uni-" .. core.random_hex(6) end

  it("sends the Moka buyer back to return_url and completes as paid", function()
    local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" }
    local r = assert(gw:purchase { reference = reference(), amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      return_url = RETURN, card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
    assert.are.equal("redirect", r.status)
    local back = magic("/moka/_sandbox/3d/complete", { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" })
    assert.are.equal(RETURN, back.RedirectUrl)
    local done = assert(gw:complete(back.Fields, r.keep))
    assert.are.equal("paid", done.status)
    assert.are.equal("27.50", done.amount)
  end)

  it("sends the MoCoPay buyer back to return_url and completes as paid", function()
    local gw = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay" }
    local r = assert(gw:purchase { pid = "12000", reference = reference(), client_ip = "127.0.0.1",
      return_url = RETURN, notify_url = NOTIFY })
    assert.are.equal("redirect", r.status)
    local back = magic("/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" })
    assert.are.equal(RETURN, back.Location:sub(1, #RETURN))
    local done = assert(gw:complete(back.Location:match("%?(.*)$"), r.keep)) -- the shop's own order=7 included
    assert.are.equal("paid", done.status)
  end)

  it("sends the Zippy buyer back to return_url, success and error alike", function()
    local gw = paykit.zippy { consumer_key = "sandbox-key", consumer_secret = "sandbox-secret",
      notice_keys = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }, base_url = base .. "/zippy" }
    local seller, product = core.uuid4(), core.uuid4()
    assert(gw:create_seller { uuid = seller, status = "ACTIVE", name = "Uniform shop", email = "shop@example.com" })
    assert(gw:create_product { uuid = product, name = "Shield", external_id = "shield-" .. core.random_hex(4), seller_id = seller })
    for _, outcome in ipairs { "success", "CC_ERROR" } do
      local r = assert(gw:purchase { product_id = product, reference = reference(), amount = "0.99", currency = "EUR",
        pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = RETURN, notify_url = NOTIFY })
      assert.are.equal("redirect", r.status)
      local back = magic("/zippy/_sandbox/pay", { token = r.keep.token, outcome = outcome })
      assert.are.equal(RETURN, back.Location:sub(1, #RETURN))
      local done = assert(gw:complete(back.Location:match("%?(.*)$"), r.keep))
      assert.are.equal(outcome == "success" and "paid" or "failed", done.status)
    end
  end)

  it("refuses a purchase without the provider's required fields before any network call", function()
    local calls = 0
    local hooks = { before = function() calls = calls + 1 end }
    local moka = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka", hooks = hooks }
    local _, err = moka:purchase { reference = reference(), amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      card = { holder = "A", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
    assert.are.equal("validation", err.kind)
    assert.are.equal("redirect_url", err.field)
    local mocopay = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay", hooks = hooks }
    _, err = mocopay:purchase { reference = reference(), return_url = "not a url" }
    assert.are.equal("validation", err.kind)
    assert.are.equal(0, calls)
  end)
end)
