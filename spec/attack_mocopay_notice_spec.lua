-- MoCoPay signs base64(MD5(api_secret .. canonical)) (its published scheme): a plain hash of
-- secret .. message, which anyone holding one signed message can extend (MD5 length
-- extension) without the secret: the forged message is the signed one, MD5's padding
-- (0x80, NUL bytes, the bit length) and whatever the forger appends. With raw values
-- (`encode_values = false`, the default) that padding travels inside the last parameter's
-- value. No genuine notification carries a control character, so a signed one that does is
-- refused as malformed before its signature is trusted and before verifyPayment is asked.
local paykit = require "paykit"
local mocopay_sign = require "paykit.providers.mocopay_sign"

local PATH = "/notify/mocopay"

local function instance(opts)
  local asked = { n = 0 }
  local o = { api_key = "app", api_secret = "mocopay-secret", base_url = "http://127.0.0.1:9/mocopay",
    notify_url = "https://shop.example" .. PATH, retry = false,
    hooks = { before = function() asked.n = asked.n + 1 end } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(paykit.mocopay(o)), asked
end

describe("a signed MoCoPay notification", function()
  it("holding a NUL or another control byte (MD5's padding always has NULs) is refused as malformed, verifyPayment never asked", function()
    for _, extended in ipairs {
      { sessionId = "s-1", status = "PaymentComplete", userId = "u\128\0\0\0\0\0\0\0\0\0\1\200" },
      { sessionId = "s-1", status = "Payment\0Complete" },
      { sessionId = "s-1", status = "PaymentComplete", ["x\0y"] = "1" },
    } do
      local gw, asked = instance()
      local q = mocopay_sign.signed_query("app", "mocopay-secret", PATH, extended)
      local r, err, reply = gw:notification { method = "GET", path = PATH, query = q }
      assert.is_nil(r)
      assert.are.equal("signature", err.kind)
      assert.are.equal("malformed", err.code)
      assert.are.equal(401, reply.status)
      assert.are.equal(0, asked.n, "refused before verifyPayment")
    end
  end)

  it("without such a byte goes on to verifyPayment (the control)", function()
    local gw, asked = instance()
    local q = mocopay_sign.signed_query("app", "mocopay-secret", PATH, { sessionId = "s-1", status = "PaymentComplete" })
    local r, err = gw:notification { method = "GET", path = PATH, query = q }
    assert.is_nil(r)
    assert.are.equal("transport", err.kind, "signature accepted; verifyPayment could not be reached")
    assert.is_true(asked.n >= 1)
  end)
end)
