-- "Verification is constant-time" (README "Security notes"): every verifier's accept/refuse
-- decision is made by core.consteq over the whole value, never by `==` or an early exit. The
-- spec puts a core.consteq in place that answers what the spec chooses: if a verifier
-- decided anywhere else, a genuine signature would still pass when consteq says "unequal",
-- or a tampered one would still fail when it says "equal". No network.
local paykit = require "paykit"
local core = require "paykit.core"
local moka_notice = require "paykit.providers.moka_notice"
local zippy_notice = require "paykit.providers.zippy_notice"
local mocopay_sign = require "paykit.providers.mocopay_sign"

local real = core.consteq
local calls
-- runs fn with core.consteq answering `answer` (nil: the real one), counting the calls
local function with_consteq(answer, fn)
  calls = 0
  core.consteq = function(a, b)
    assert(type(a) == "string" and type(b) == "string", "consteq compares two strings")
    calls = calls + 1
    if answer == nil then return real(a, b) end
    return answer
  end
  local ok, r, e = pcall(fn)
  core.consteq = real
  assert(ok, r)
  return r, e
end

describe("every verifier decides through core.consteq", function()
  after_each(function() core.consteq = real end)

  it("Moka's 3D hashValue", function()
    local gw = assert(paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = "http://127.0.0.1:9/moka" })
    local cfh = "9FDFBDFC-42C5-417E-AA93-E4D9D5312AAC"
    local good = { hashValue = moka_notice.hash_3d(cfh, true), resultCode = "", trxCode = "t-1" }
    local bad = { hashValue = ("0"):rep(64), resultCode = "", trxCode = "t-1" }
    assert.are.equal("paid", with_consteq(nil, function() return gw:verify_3d(good, cfh) end).status)
    assert.is_true(calls >= 1)
    local r, err = with_consteq(false, function() return gw:verify_3d(good, cfh) end)
    assert.is_nil(r); assert.are.equal("bad_signature", err.code)
    assert.are.equal("paid", with_consteq(true, function() return gw:verify_3d(bad, cfh) end).status,
      "a tampered hash is refused only because consteq said so")
    local _, e2 = with_consteq(nil, function() return gw:verify_3d(bad, cfh) end)
    assert.are.equal("bad_signature", e2.code)
  end)

  it("Zippy's notices, with every configured key", function()
    local keys = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }
    local gw = assert(paykit.zippy { consumer_key = "k", consumer_secret = "s", notice_keys = keys,
      base_url = "http://127.0.0.1:9/zippy" })
    local good = zippy_notice.sign({ { "ext_transaction_id", "order-1~00aa11bb22cc" } }, 0, keys[0])
    local bad = good:sub(1, -2) .. (good:sub(-1) == "0" and "1" or "0")
    assert.are.equal("order-1~00aa11bb22cc", with_consteq(nil, function() return gw:verify_notice(good) end).ext_transaction_id)
    local r, err = with_consteq(false, function() return gw:verify_notice(good) end)
    assert.is_nil(r); assert.are.equal("bad_signature", err.code)
    assert.is_table(with_consteq(true, function() return gw:verify_notice(bad) end))
    local _, e2 = with_consteq(nil, function() return gw:verify_notice(bad) end)
    assert.are.equal("bad_signature", e2.code)
  end)

  it("MoCoPay's notification signature and its api key", function()
    local gw = assert(paykit.mocopay { api_key = "app", api_secret = "mocopay-secret", base_url = "http://127.0.0.1:9/mocopay" })
    local path, params = "/notify", { sessionId = "s-1", status = "PaymentComplete", referenceId = "order-1" }
    local good = mocopay_sign.sign("mocopay-secret", path, params, "md5", false)
    local bad = (good:sub(1, 1) == "A" and "B" or "A") .. good:sub(2)
    assert.is_true(with_consteq(nil, function() return gw.check("app", path, params, good) end))
    assert.is_true(calls >= 2, "the key and the signature")
    assert.is_false(with_consteq(false, function() return gw.check("app", path, params, good) end))
    assert.is_true(with_consteq(true, function() return gw.check("other", path, params, bad) end))
    assert.is_false(with_consteq(nil, function() return gw.check("app", path, params, bad) end))
    assert.is_false(with_consteq(nil, function() return gw.check("other", path, params, good) end))
  end)
end)
