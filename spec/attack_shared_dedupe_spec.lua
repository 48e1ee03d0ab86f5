-- "Duplicates": a notification handled by one instance (another nginx worker, another game
-- server) must be a duplicate for the others when they share a store. Attacked for each
-- provider the way README says to share it, with two instances on one store: the second
-- delivery of one payment must be flagged. Over real HTTP against the sandbox.
local paykit = require "paykit"
local core = require "paykit.core"
local store = require "paykit.store"
local sb = require "spec.support.sandbox"

describe("two instances sharing one store", function()
  local base
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("is what README tells a merchant to do (the provider's store option, not gw.seen)", function()
    local f = assert(io.open("README.md")); local readme = f:read("*a"); f:close()
    assert.is_nil(readme:find("gw.seen = store.seen", 1, true),
      "gw.seen is MoCoPay's in-flight claim memory (claim/wait/settle), which store.seen does not have; Moka and Zippy never read it")
    assert.is_truthy(readme:find("store = s", 1, true))
  end)

  it("flags Moka's second delivery of one payment on the other instance", function()
    local s = store.memory()
    local function moka() return assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
      base_url = base .. "/moka", store = s }) end
    local a, b = moka(), moka()
    local r = assert(a:purchase { reference = "dd-" .. core.random_hex(4), amount = "27.50", currency = "TL",
      client_ip = "127.0.0.1", return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
    local res = sb.post_json("/moka/_sandbox/3d/complete",
      { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" })
    local body = core.form_encode(res.json.Fields)
    local first = assert(a:notification({ method = "POST", body = body }, { keep = r.keep }))
    local second = assert(b:notification({ method = "POST", body = body }, { keep = r.keep }))
    assert.are.equal("paid", first.status); assert.is_false(first.duplicate)
    assert.is_true(second.duplicate)
  end)

  it("flags MoCoPay's second delivery of one payment on the other instance", function()
    local s = store.memory()
    local function mocopay() return assert(paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret",
      base_url = base .. "/mocopay", store = s }) end
    local a, b = mocopay(), mocopay()
    local p = assert(a:purchase { pid = "12000", reference = "dd-" .. core.random_hex(4), client_ip = "127.0.0.1",
      return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
    local back = sb.post_json("/mocopay/_sandbox/act", { trn = p.redirect_url:match("trn=(%w+)"), action = "send-sms" }).json
    local sid = back.Location:match("sessionId=([^&]+)")
    local q = "sessionId=" .. sid .. "&status=PaymentComplete"
    local first = assert(a:notification { method = "GET", path = "/n", query = q })
    local second = assert(b:notification { method = "GET", path = "/n", query = q })
    assert.are.equal("paid", first.status); assert.is_false(first.duplicate)
    assert.is_true(second.duplicate)
  end)

  it("flags Zippy's second delivery of one payment on the other instance", function()
    local s = store.memory()
    local keys = { [0] = "zippy-notice-secret-0" }
    local function zippy() return assert(paykit.zippy { consumer_key = "k", consumer_secret = "s", notice_keys = keys,
      base_url = base .. "/zippy", store = s }) end
    local a, b = zippy(), zippy()
    local _, body = require("paykit.providers.zippy").generate_test_notice {
      key = keys[0], key_id = 0, ext_transaction_id = "dd-" .. core.random_hex(4) }
    assert.is_false(assert(a:notification { method = "POST", body = body }).duplicate)
    assert.is_true(assert(b:notification { method = "POST", body = body }).duplicate)
  end)
end)
