local money = require "paykit.money"
local errors = require "paykit.errors"

describe("paykit.money", function()
  it("knows currency exponents, TL as an alias of TRY", function()
    assert.equal(2, money.exponent("TRY"))
    assert.equal(2, money.exponent("TL"))
    assert.equal(2, money.exponent("usd"))
    assert.equal(0, money.exponent("JPY"))
    assert.equal(3, money.exponent("KWD"))
    assert.is_nil(money.exponent("XXX"))
  end)

  it("parses decimal strings into minor units and a canonical string", function()
    local m, d = money.parse("27.5", "TRY")
    assert.equal(2750, m); assert.equal("27.50", d)
    m, d = money.parse("0.01", "USD")
    assert.equal(1, m); assert.equal("0.01", d)
    m, d = money.parse("79.10", "EUR")
    assert.equal(7910, m); assert.equal("79.10", d)
    m, d = money.parse("1000", "JPY")
    assert.equal(1000, m); assert.equal("1000", d)
    m, d = money.parse("1.005", "KWD")
    assert.equal(1005, m); assert.equal("1.005", d)
  end)

  it("accepts integer minor units", function()
    local m, d = money.parse(2750, "TL")
    assert.equal(2750, m); assert.equal("27.50", d)
  end)

  it("refuses a non-integral number, naming the field", function()
    local m, err = money.parse(27.5, "TRY", "Amount")
    assert.is_nil(m)
    assert.is_true(errors.is(err))
    assert.equal("validation", err.kind)
    assert.equal("Amount", err.field)
    assert.equal("not_integer_minor_units", err.code)
  end)

  for _, case in ipairs {
    { "27.505", "too_many_decimals" }, { "1e3", "exponent_notation" }, { "-1", "sign" }, { "+1", "sign" },
    { "1,00", "invalid" }, { " 1", "invalid" }, { "", "empty" }, { "99999999999999999999", "overflow" },
  } do
    it("refuses " .. string.format("%q", case[1]) .. " as " .. case[2], function()
      local m, err = money.parse(case[1], "TRY")
      assert.is_nil(m)
      assert.equal("amount", err.field)
      assert.equal(case[2], err.code)
    end)
  end

  it("refuses negative and non-finite numbers", function()
    assert.equal("sign", select(2, money.parse(-5, "TRY")).code)
    assert.equal("not_integer_minor_units", select(2, money.parse(1 / 0, "TRY")).code)
    assert.equal("not_integer_minor_units", select(2, money.parse(0 / 0, "TRY")).code)
  end)

  it("refuses an unknown currency naming the currency field", function()
    local m, err = money.parse("1.00", "XXX")
    assert.is_nil(m); assert.equal("currency", err.field)
  end)

  it("refuses a missing amount", function()
    local m, err = money.parse(nil, "TRY")
    assert.is_nil(m); assert.equal("required", err.code)
  end)

  it("formats minor units", function()
    assert.equal("27.50", money.format(2750, "TRY"))
    assert.equal("0.05", money.format(5, "USD"))
    assert.equal("1500", money.format(1500, "JPY"))
  end)
end)
