local redact = require "paykit.redact"
local cjson = require "cjson"

describe("paykit.redact", function()
  describe("card", function()
    it("keeps the first 6 and last 4 digits", function()
      assert.equal("411111******1111", redact.card("4111111111111111"))
      assert.equal("400000*********0006", redact.card("4000000000000000006"))
    end)
    it("keeps separators in place", function()
      assert.equal("4111 11** **** 1111", redact.card("4111 1111 1111 1111"))
    end)
    it("masks a short value whole", function()
      assert.equal("*****", redact.card("12345"))
    end)
  end)

  describe("value", function()
    for _, key in ipairs { "cvc", "CVV", "CvcNumber", "cvc_number", "Password", "CheckKey", "client_secret",
                           "Signature", "Authorization", "api_key", "access_token", "CardToken" } do
      it("replaces " .. key, function()
        assert.equal("[REDACTED]", redact.value(key, "s3cr3t"))
      end)
    end
    it("masks a card number key", function()
      assert.equal("555566******8884", redact.value("CardNumber", "5555666677778884"))
      assert.equal("555566******8884", redact.value("number", "5555666677778884"))
    end)
    it("leaves ordinary fields alone", function()
      assert.equal("27.50", redact.value("Amount", "27.50"))
      assert.equal(3, redact.value("InstallmentNumber", 3))
    end)
  end)

  describe("table", function()
    it("deep-copies with sensitive values scrubbed", function()
      local t = { PaymentDealerAuthentication = { DealerCode = "1", Password = "pw", CheckKey = "ck" },
                  PaymentDealerRequest = { CardNumber = "4111111111111111", CvcNumber = "123", Amount = "1.00" },
                  card = { number = "5555666677778884", cvc = "999" } }
      local r = redact.table(t)
      assert.equal("pw", t.PaymentDealerAuthentication.Password) -- original untouched
      assert.equal("[REDACTED]", r.PaymentDealerAuthentication.Password)
      assert.equal("[REDACTED]", r.PaymentDealerAuthentication.CheckKey)
      assert.equal("1", r.PaymentDealerAuthentication.DealerCode)
      assert.equal("411111******1111", r.PaymentDealerRequest.CardNumber)
      assert.equal("[REDACTED]", r.PaymentDealerRequest.CvcNumber)
      assert.equal("555566******8884", r.card.number)
      assert.equal("[REDACTED]", r.card.cvc)
      assert.equal("1.00", r.PaymentDealerRequest.Amount)
    end)
    it("survives cycles", function()
      local t = { password = "x" }; t.self = t
      local r = redact.table(t)
      assert.equal(r, r.self)
      assert.equal("[REDACTED]", r.password)
    end)
  end)

  describe("text", function()
    it("masks Luhn-valid digit runs of 12 to 19 digits", function()
      local s = redact.text("pan 4111111111111111 and 5555666677778884.")
      assert.equal("pan 411111******1111 and 555566******8884.", s)
    end)
    it("leaves digit runs that fail Luhn", function()
      assert.equal("order 4111111111111112", redact.text("order 4111111111111112"))
    end)
    it("masks grouped card numbers", function()
      assert.equal("4111-11**-****-1111", redact.text("4111-1111-1111-1111"))
    end)
    it("scrubs JSON values of sensitive keys", function()
      local s = redact.text(cjson.encode { PaymentDealerAuthentication = { Password = "p@ss", CheckKey = "abcdef0123" },
        PaymentDealerRequest = { CvcNumber = "123", CardNumber = "1234567890123", ExpYear = "2030" } })
      assert.is_nil(s:find("p@ss", 1, true))
      assert.is_nil(s:find("abcdef0123", 1, true))
      assert.is_nil(s:find('"123"', 1, true))
      assert.is_nil(s:find("1234567890123", 1, true)) -- by key, even when not Luhn-valid
      assert.truthy(s:find('"ExpYear":"2030"', 1, true))
    end)
    it("scrubs numeric and escaped JSON values", function()
      local s = redact.text('{"cvc":123,"password":"a\\"b\\"c","x":1}')
      assert.equal('{"cvc":"[REDACTED]","password":"[REDACTED]","x":1}', s)
    end)
    it("scrubs form-style values", function()
      assert.equal("a=1&cvc=[REDACTED]&Password=[REDACTED]&card%5Bcvc%5D=[REDACTED]",
        redact.text("a=1&cvc=123&Password=hunter2&card%5Bcvc%5D=999"))
    end)
    it("scrubs Authorization headers", function()
      assert.equal("Authorization: [REDACTED]", redact.text("Authorization: Bearer abc.def"))
    end)
  end)

  describe("text, secrets beyond cards", function()
    it("treats CodeForHash as a secret, in every spelling", function()
      for _, key in ipairs { "CodeForHash", "code_for_hash", "codeForHash", "CODEFORHASH" } do
        assert.equal("secret", redact.classify(key))
      end
      local s = redact.text('{"IsSuccessful":true,"Data":{"Url":"https://x/3d","CodeForHash":"8A3D0E7F-1C2B-4D5E"}}')
      assert.equal('{"IsSuccessful":true,"Data":{"Url":"https://x/3d","CodeForHash":"[REDACTED]"}}', s)
    end)
    it("scrubs JSON logged inside a JSON string (escaped once)", function()
      local s = redact.text('{"msg":"{\\"CodeForHash\\":\\"ABC-123\\",\\"CvcNumber\\":\\"123\\",\\"x\\":\\"1\\"}"}')
      assert.equal('{"msg":"{\\"CodeForHash\\":\\"[REDACTED]\\",\\"CvcNumber\\":\\"[REDACTED]\\",\\"x\\":\\"1\\"}"}', s)
    end)
    it("scrubs a string value that has no closing quote to the end", function()
      assert.equal('{"Password":"[REDACTED]"', redact.text('{"Password":"abc'))
    end)
    it("scrubs header lines of any secret key, to the end of the line", function()
      assert.equal("Authorization: [REDACTED]\r\nX-Api-Key: [REDACTED]\r\nAccept: */*",
        redact.text("Authorization: OAuth realm=\"Zippy\", oauth_signature=\"c2ln\"\r\nX-Api-Key: k1\r\nAccept: */*"))
    end)
    it("scrubs key = value and key = \"value\" pairs", function()
      assert.equal('api_secret = [REDACTED], code_for_hash = "[REDACTED]", amount = 5',
        redact.text('api_secret = s3cr3t, code_for_hash = "ABC DEF", amount = 5'))
    end)
    it("masks a card number grouped by single spaces or dashes inside other digits", function()
      assert.equal("ref 12 4111 11** **** 1111 ok", redact.text("ref 12 4111 1111 1111 1111 ok"))
      assert.equal("378282*****0005", redact.text("378282246310005"))
    end)
  end)

  describe("a wire transcript", function()
    it("keeps the structure and drops every secret of a Moka 3D exchange", function()
      local t = table.concat({
        "POST /PaymentDealer/DoDirectPaymentThreeD HTTP/1.1",
        "Host: service.refmoka.com",
        "Authorization: Basic c2FuZGJveDpzYW5kYm94LXBhc3M=",
        "Cookie: session=abc123",
        "Content-Type: application/json",
        "",
        '{"PaymentDealerAuthentication":{"DealerCode":"1730","Username":"sandbox","Password":"sandbox-pass",' ..
          '"CheckKey":"a1b2c3"},"PaymentDealerRequest":{"CardNumber":"4111111111111111","CvcNumber":"864",' ..
          '"ExpMonth":"12","Amount":27.50}}',
        "HTTP/1.1 200 OK",
        "Content-Type: application/json",
        "",
        '{"Data":{"Url":"https://3d.example/?threeDTrxCode=T-1","CodeForHash":"5F2C0B1E-7A3D-4C49"},' ..
          '"ResultCode":"Success","IsSuccessful":true}',
      }, "\r\n")
      local r = redact.text(t)
      for _, secret in ipairs { "c2FuZGJveDpzYW5kYm94LXBhc3M=", "abc123", "sandbox-pass", "a1b2c3", "4111111111111111",
                                '"864"', "5F2C0B1E-7A3D-4C49" } do
        assert.is_nil(r:find(secret, 1, true), secret)
      end
      for _, kept in ipairs { "Host: service.refmoka.com", '"DealerCode":"1730"', '"CardNumber":"411111******1111"',
                              '"Amount":27.50', "threeDTrxCode=T-1", '"CodeForHash":"[REDACTED]"', "HTTP/1.1 200 OK" } do
        assert.truthy(r:find(kept, 1, true), kept)
      end
    end)
  end)

  describe("in linear time", function()
    -- Each of these shapes made the old passes quadratic (a pattern tried at every start
    -- that consumed the whole run before failing: ~20 s for 40 KB, hours for 1 MB). A 1 MB
    -- input of each now gives its exact result; the time is measured in bench/redact.lua.
    local MB = 1024 * 1024
    local shapes = {
      { "a word run", string.rep("a", MB) },
      { "a digit run", string.rep("7", MB) },
      { "dash-grouped digits", string.rep("1234-", math.floor(MB / 5)) },
      { "space-grouped digits", string.rep("1234 ", math.floor(MB / 5)) },
      { "quotes", string.rep('"a"', math.floor(MB / 3)) },
      { "keys without values", string.rep("abc=", math.floor(MB / 4)) },
      { "colons", string.rep("abc: ", math.floor(MB / 5)) },
      { "backslashes", string.rep('"\\', math.floor(MB / 2)) },
      { "spaces after a key", '"k"' .. string.rep(" ", MB) },
    }
    for _, case in ipairs(shapes) do
      it("scrubs 1 MB of " .. case[1] .. " (nothing to scrub: unchanged)", function()
        local s = case[2]
        assert.equal(s, redact.text(s))
      end)
    end
    it("scrubs 1 MB of secrets, replacing each one", function()
      local unit = '{"CvcNumber":"123","CodeForHash":"ABC","pan":"x 4111111111111111"},password=p&'
      local n = math.floor(MB / #unit)
      local r = redact.text(string.rep(unit, n))
      local want = '{"CvcNumber":"[REDACTED]","CodeForHash":"[REDACTED]","pan":"x 411111******1111"},password=[REDACTED]&'
      assert.equal(string.rep(want, n), r)
    end)
    it("runs a number of Lua calls proportional to the length", function()
      -- a mixed log text: the count of function calls for 4x the text is at most 4x (+5%)
      local unit = 'paykit moka.pay response 200 {"Data":{"CodeForHash":"A1"},"x":"y"} a=1&cvc=2 4111111111111111 '
      local function calls(s)
        local count = 0
        debug.sethook(function() count = count + 1 end, "c")
        redact.text(s)
        debug.sethook()
        return count
      end
      local c1, c4 = calls(string.rep(unit, 200)), calls(string.rep(unit, 800))
      assert.is_true(c1 > 200)
      assert.is_true(c4 <= c1 * 4 * 1.05, c1 .. " calls, then " .. c4 .. " for 4x the text")
    end)
  end)

  describe("line", function()
    it("keeps a short line whole, scrubbed", function()
      assert.equal("cvc=[REDACTED]", redact.line("cvc=123"))
    end)
    it("cuts a long line to MAX_LINE bytes and says how much was cut", function()
      local s = redact.line(string.rep("x", redact.MAX_LINE + 100))
      assert.equal(string.rep("x", redact.MAX_LINE) .. "...[100 bytes cut]", s)
    end)
    it("never ends inside a digit run, so no card number is cut short past the mask", function()
      local s = string.rep("x", 90) .. " 4111111111111111"
      local r = redact.line(s, 100)
      assert.equal(string.rep("x", 90) .. "...[17 bytes cut]", r)
    end)
    it("scrubs a secret cut in half", function()
      local r = redact.line('{"CodeForHash":"ABCDEF0123456789"}', 24)
      assert.is_nil(r:find("ABCD", 1, true))
      assert.truthy(r:find("bytes cut]", 1, true))
    end)
    it("is what paykit's logger passes on: a 1 MB response body logs at most MAX_LINE bytes", function()
      local got
      local log = require("paykit.http").make_logger(function(_, line) got = line end)
      log("debug", "paykit moka.pay response 200 " .. string.rep('{"CodeForHash":"ABC-1"},', 44000))
      assert.is_true(#got <= redact.MAX_LINE + #"...[1056000 bytes cut]", #got .. " bytes")
      assert.truthy(got:find("bytes cut]$"))
      assert.is_nil(got:find("ABC-1", 1, true))
    end)
    it("costs at most the bound, whatever the input's length", function()
      local r = redact.line(string.rep("a=1&", 4 * 1024 * 1024), 1000)
      assert.is_true(#r <= 1000 + #"...[16776216 bytes cut]")
    end)
  end)

  describe("dump", function()
    it("prints a table with sorted keys and every secret scrubbed", function()
      assert.equal('{amount = "1.00", card = {cvc = "[REDACTED]", number = "411111******1111"}, keep = {code_for_hash = "[REDACTED]"}}',
        redact.dump { amount = "1.00", card = { number = "4111111111111111", cvc = "123" }, keep = { code_for_hash = "ABC" } })
    end)
    it("prints cycles and non-string keys", function()
      local t = { 1, 2 }; t.me = t
      assert.equal('{[1] = 1, [2] = 2, me = <cycle>}', redact.dump(t))
    end)
  end)

  it("has a Luhn check", function()
    assert.is_true(redact.luhn("4111111111111111"))
    assert.is_false(redact.luhn("4111111111111112"))
  end)
end)
