-- "Amounts go to the wire as exact text, never through a float (79.10 stays 79.10)" (README
-- "Money"). An amount that survives a double is no attack: 27.50 written through %.2f is
-- still 27.50. These amounts are near the top of what paykit takes (2^53-1 minor units), where
-- a double holds only multiples of 1/64: 90071992547409.87 as a double is ...409.875, which
-- prints as .88. Each provider's request body and each amount read from an answer is compared
-- byte for byte, over real HTTP with a local scripted server (spec/support/moka_stub.lua
-- records the last request body; it is no provider, so Zippy's answer is refused after the
-- request was sent, which is all this spec needs).
local paykit = require "paykit"
local stub = require "spec.support.moka_stub"

local BIG = "90071992547409.87"        -- 9007199254740987 minor units, below 2^53-1
local BIG_MINOR = 9007199254740987
local CARD = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" }

local function double_of(text) return string.format("%.2f", tonumber(text)) end

describe("exact money on the wire", function()
  local base
  lazy_setup(function() base = stub.start() end)
  lazy_teardown(function() stub.stop() end)
  before_each(function() stub.reset() end)

  it("uses amounts a double cannot hold (the attack is real)", function()
    assert.are_not.equal(BIG, double_of(BIG))
    assert.are_not.equal(BIG_MINOR, math.floor(tonumber(BIG) * 100 + 0.5))
  end)

  it("sends every provider's amount as the exact text, also where a double cannot hold it", function()
    local moka = assert(paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = base, retry = false })
    stub.answer("/PaymentDealer/DoDirectPayment",
      stub.envelope('{"IsSuccessful":true,"ResultCode":"","ResultMessage":"","VirtualPosOrderId":"ORDER-1"}'))
    for _, money in ipairs { { amount = BIG }, { amount_minor = BIG_MINOR }, { amount = "79.10" } } do
      local p = { reference = "exact-1", currency = "TL", client_ip = "127.0.0.1", card = CARD }
      for k, v in pairs(money) do p[k] = v end
      local r = assert(moka:pay(p))
      local want = money.amount or BIG
      assert.are.equal("paid", r.status)
      assert.matches('"Amount":' .. want:gsub("%.", "%%.") .. '[,}]', stub.last())
      assert.are.equal(want, r.amount)
    end
    -- each call's own body: the count moves by one per call, and the last body is its
    for i, call in ipairs {
      function() return moka:capture { reference = "exact-1", amount = BIG, client_ip = "127.0.0.1" } end,
      function() return moka:refund { reference = "exact-1", amount_minor = BIG_MINOR } end,
    } do
      local before = stub.count()
      local _, err = call()
      assert.are.equal(before + 1, stub.count(), "call " .. i .. " was sent: " .. tostring(err))
      assert.matches('"Amount":' .. BIG:gsub("%.", "%%.") .. '[,}]', stub.last())
    end

    local zippy = assert(paykit.zippy { consumer_key = "k", consumer_secret = "s", notice_keys = { [0] = "n" },
      base_url = base, retry = false })
    for _, money in ipairs { { amount = BIG }, { amount_minor = BIG_MINOR } } do
      local p = { product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", reference = "o", currency = "EUR",
        pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = "https://shop.example/r",
        notify_url = "https://shop.example/n" }
      for k, v in pairs(money) do p[k] = v end
      local before = stub.count()
      zippy:purchase(p)
      assert.are.equal(before + 1, stub.count())
      assert.matches('"price":"?' .. BIG:gsub("%.", "%%.") .. '"?[,}]', stub.last())
    end
    assert.equal(7, stub.count())
  end)

  it("formats and reads amounts exactly in paykit.money, the kit's answer reader and MoCoPay's minor units", function()
    local money = require "paykit.money"
    local kjson = require "paykit.kit.json"
    local mocopay_wire = require "paykit.providers.mocopay_wire"
    assert.are.equal(BIG, money.format(BIG_MINOR, "TRY"))
    assert.are.equal("79.10", money.format(7910, "TRY"))
    local minor, text = money.parse(BIG, "TL")
    assert.are.equal(BIG_MINOR, minor)
    assert.are.equal(BIG, text)
    assert.are.equal(BIG_MINOR, (money.parse_minor(BIG_MINOR, "EUR")))
    assert.are.equal(BIG, kjson.amount(BIG, "EUR"))
    local decoded = assert(kjson.decode('{"price":' .. BIG .. ',"n":{"amount":' .. BIG .. '}}', { exact = true }))
    assert.are.equal(BIG, kjson.amount(decoded.price, "EUR"))
    -- MoCoPay's minor units are read up to 15 digits (longer: no amount, never a guess)
    assert.are.equal("9007199254740.99", mocopay_wire.amount("900719925474099", "EUR"))
    assert.is_nil(mocopay_wire.amount(tostring(BIG_MINOR), "EUR"))
    assert.are.equal(BIG, mocopay_wire.amount(BIG, "EUR", "major"))
  end)

  it("reads amounts from answers as their text, also where a double cannot hold it", function()
    local moka = assert(paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = base, retry = false })
    for _, amount in ipairs { BIG, "79.10", "0.30" } do
      stub.answer("/PaymentDealer/GetDealerPaymentTrxDetailList", stub.envelope(
        '{"PaymentDetail":{"PaymentStatus":2,"OtherTrxCode":"exact-2","Amount":' .. amount
        .. ',"CurrencyCode":"TL","DealerPaymentId":7},"PaymentTrxDetailList":[]}'))
      local r = assert(moka:status("exact-2"))
      assert.are.equal("paid", r.status)
      assert.are.equal(amount, r.amount)
    end
  end)
end)
