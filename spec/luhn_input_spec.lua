-- paykit.redact.luhn is public: text that is not all digits is "not a card number", never a
-- raise (review1: the two-digits-at-a-time rewrite indexed a table with any byte).
local redact = require "paykit.redact"

describe("paykit.redact.luhn", function()
  it("answers true or false for digit strings", function()
    assert.is_true(redact.luhn("4111111111111111"))
    assert.is_true(redact.luhn("79927398713"))
    assert.is_false(redact.luhn("4111111111111112"))
  end)
  for _, s in ipairs { "4111 1111 1111 1111", "4111-1111-1111-1111", "41111111111111a1", "x", "411111111111111\0" } do
    it("answers false, without raising, for " .. ("%q"):format(s), function()
      local ok, v = pcall(redact.luhn, s)
      assert.is_true(ok, tostring(v))
      assert.is_false(v)
    end)
  end
end)
