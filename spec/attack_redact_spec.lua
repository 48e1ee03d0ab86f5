-- paykit.redact.text attacked with the shapes secrets take in logged text that redact_spec's
-- examples leave out: key="value" and key='value' with no space around "=" (OAuth header
-- parameters logged without their "Authorization:" prefix, Lua and shell style assignments),
-- quoted values holding spaces, separators and an "=" of their own.
local redact = require "paykit.redact"

describe("redact.text on quoted values right after =", function()
  local CASES = {
    { 'password="hunter2"', 'password="[REDACTED]"' },
    { "secret='zz top' next", "secret='[REDACTED]' next" },
    { 'oauth_signature="c2ln%2B"', 'oauth_signature="[REDACTED]"' },
    { 'OAuth realm="Zippy", oauth_consumer_key="k", oauth_signature="abc%2B", oauth_nonce="n"',
      'OAuth realm="Zippy", oauth_consumer_key="k", oauth_signature="[REDACTED]", oauth_nonce="n"' },
    { 'api_secret="a b,c;d&e=f" amount=5', 'api_secret="[REDACTED]" amount=5' },
    { 'CodeForHash="9FDFBDFC-42C5"', 'CodeForHash="[REDACTED]"' },
    { 'card_number="4111 1111 1111 1111"', 'card_number="4111 11** **** 1111"' },
    { 'password="unterminated and the rest', 'password="[REDACTED]' },
  }
  for _, c in ipairs(CASES) do
    it("scrubs " .. c[1], function()
      assert.are.equal(c[2], redact.text(c[1]))
    end)
  end

  it("leaves quoted values of ordinary keys, and empty ones, alone", function()
    assert.are.equal('realm="Zippy" reference="order-7"', redact.text('realm="Zippy" reference="order-7"'))
    assert.are.equal('password="" x', redact.text('password="" x'))
  end)
end)
