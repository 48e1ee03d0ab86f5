local errors = require "paykit.errors"

describe("paykit.errors", function()
  it("builds an error with every documented field", function()
    local e = errors.new { kind = "provider", code = "moka.invalid_account", message = "no such dealer",
      field = "dealer_code", retryable = false, status = 200, provider_code = "X.Y", provider_message = "m" }
    assert.equal("provider", e.kind)
    assert.equal("moka.invalid_account", e.code)
    assert.equal("no such dealer", e.message)
    assert.equal("dealer_code", e.field)
    assert.is_false(e.retryable)
    assert.equal(200, e.status)
    assert.equal("X.Y", e.provider_code)
    assert.equal("m", e.provider_message)
  end)

  it("prints kind, field, code and message", function()
    local e = errors.validation("card.number", "invalid_luhn", "card number fails the Luhn check")
    assert.equal("paykit validation error [card.number invalid_luhn]: card number fails the Luhn check", tostring(e))
  end)

  it("prints without a field when there is none", function()
    assert.equal("paykit signature error [bad_hash]: hash mismatch", tostring(errors.signature("bad_hash", "hash mismatch")))
  end)

  it("refuses an unknown kind", function()
    assert.has_error(function() errors.new { kind = "oops", code = "x", message = "y" } end)
  end)

  it("recognises its own errors only", function()
    assert.is_true(errors.is(errors.config("timeout", "invalid", "bad")))
    assert.is_false(errors.is({ kind = "config" }))
    assert.is_false(errors.is("paykit config error"))
  end)

  it("offers shorthands with the right kinds", function()
    assert.equal("config", errors.config("f", "c", "m").kind)
    assert.equal("validation", errors.validation("f", "c", "m").kind)
    assert.equal("signature", errors.signature("c", "m").kind)
    assert.equal("provider", errors.provider { code = "c", message = "m" }.kind)
    local t = errors.transport("connect", "refused", true)
    assert.equal("transport", t.kind); assert.is_true(t.retryable)
    assert.equal("timeout", errors.timeout("timeout", "slow", false).kind)
  end)

  it("never carries a card number, CVC or password", function()
    local e = errors.provider { code = "x", message = 'bad {"CardNumber":"4111111111111111","CvcNumber":"123"} password=hunter2',
      provider_message = "card 5555666677778884 refused" }
    local s = tostring(e) .. e.provider_message
    assert.is_nil(s:find("4111111111111111", 1, true))
    assert.is_nil(s:find("5555666677778884", 1, true))
    assert.is_nil(s:find('"123"', 1, true))
    assert.is_nil(s:find("hunter2", 1, true))
    assert.truthy(s:find("411111******1111", 1, true))
  end)
end)
