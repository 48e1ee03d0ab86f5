-- The Zippy client without the network: OAuth signing, signed notices, validation,
-- configuration, the uniform flow's local parts.
local core = require "paykit.core"
local paykit = require "paykit"
local zippy = require "paykit.providers.zippy"
local oauth = require "paykit.providers.zippy_oauth"
local notice = require "paykit.providers.zippy_notice"

local VECTOR_PARAMS = {
  oauth_consumer_key = "dpf43f3p2l4k3l03", oauth_nonce = "abc", oauth_signature_method = "HMAC-SHA1",
  oauth_timestamp = "1700000000", oauth_token = "notimplemented", oauth_version = "1.0",
}
local VECTOR_BASE = "GET&http%3A%2F%2F127.0.0.1%3A2605%2Fsellers&oauth_consumer_key%3Ddpf43f3p2l4k3l03"
  .. "%26oauth_nonce%3Dabc%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1700000000"
  .. "%26oauth_token%3Dnotimplemented%26oauth_version%3D1.0"

local NOTICE_QS = "ext_transaction_id=webpay%20xyz%2F2%26a%3Db&error=CC_ERROR"
-- openssl dgst -sha256 -hmac zippy-notice-secret-0 over NOTICE_QS
local NOTICE_SIG = "2b1b112b8acdb4c4a3ee79fb19a918cc1002862e0f49b7af3458a5d6c4b00e7a"
local KEYS = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }

-- A client whose every network attempt is counted (there should be none in these specs).
local function offline(extra)
  local calls = { n = 0 }
  local opts = {
    consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf44",
    base_url = "http://127.0.0.1:9/zippy", notice_keys = KEYS, retry = false,
    hooks = { before = function() calls.n = calls.n + 1 end },
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return paykit.zippy(opts), calls
end

local function tx(over)
  local t = {
    product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", price = "0.89", currency = "EUR", pay_method = "OPERATOR", carrier = "TMOBILE",
    region = 300, ext_transaction_id = "order-1",
    success_url = "https://shop.example/success", error_url = "https://shop.example/error",
    callback_success_url = "https://shop.example/cb/success", callback_error_url = "https://shop.example/cb/error",
  }
  for k, v in pairs(over or {}) do if v == false then t[k] = nil else t[k] = v end end -- false: remove
  return t
end

describe("zippy OAuth 1.0 signing", function()
  it("builds the base string of the zippy-notes worked example", function()
    assert.are.equal(VECTOR_BASE, oauth.base_string("GET", "http://127.0.0.1:2605/sellers", VECTOR_PARAMS))
  end)

  it("signs the worked example to 467mnp5J8iEZ/5XGoc2Qz1jqA6s=", function()
    assert.are.equal("467mnp5J8iEZ/5XGoc2Qz1jqA6s=", oauth.signature(VECTOR_BASE, "kd94hf93k423kf44"))
  end)

  it("puts the percent-encoded signature and every oauth parameter in the header", function()
    local h = oauth.authorization { method = "GET", url = "http://127.0.0.1:2605/sellers",
      consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf44", token = "notimplemented",
      nonce = "abc", timestamp = 1700000000, realm = "Zippy" }
    assert.are.equal('OAuth realm="Zippy", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_nonce="abc", '
      .. 'oauth_signature_method="HMAC-SHA1", oauth_timestamp="1700000000", oauth_token="notimplemented", '
      .. 'oauth_version="1.0", oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"', h)
  end)

  it("leaves realm and oauth_signature out of the base string", function()
    local p = {}
    for k, v in pairs(VECTOR_PARAMS) do p[k] = v end
    p.realm, p.oauth_signature = "Zippy", "x"
    assert.are.equal(VECTOR_BASE, oauth.base_string("GET", "http://127.0.0.1:2605/sellers", p))
  end)

  it("lowercases scheme and host and drops the default port", function()
    assert.are.equal("http://shop.example/a/B", oauth.base_uri("HTTP://Shop.Example:80/a/B"))
    assert.are.equal("https://shop.example/x", oauth.base_uri("https://shop.example:443/x?q=1"))
    assert.are.equal("https://shop.example:8443/", oauth.base_uri("https://shop.example:8443"))
  end)

  it("includes query parameters, sorted by encoded name then value", function()
    local b = oauth.base_string("get", "http://h:1/products?seller_id=s%201&external_id=b&external_id=a",
      { oauth_nonce = "n" })
    assert.are.equal("GET&http%3A%2F%2Fh%3A1%2Fproducts&external_id%3Da%26external_id%3Db"
      .. "%26oauth_nonce%3Dn%26seller_id%3Ds%25201", b)
  end)

  it("signs with the injected clock and nonce, token notimplemented by default", function()
    local z = paykit.zippy { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf44",
      base_url = "http://127.0.0.1:2605", notice_keys = KEYS, clock = function() return 1700000000 end,
      nonce = function() return "abc" end }
    local h = z.sign("GET", "http://127.0.0.1:2605/sellers")
    assert.truthy(h:find('oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"', 1, true))
    assert.truthy(h:find('oauth_token="notimplemented"', 1, true))
  end)

  it("an instance's signer (parts made once) gives the worked example's header", function()
    local sign = oauth.signer { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf44",
      token = "notimplemented", realm = "Zippy" }
    assert.are.equal('OAuth realm="Zippy", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_nonce="abc", '
      .. 'oauth_signature_method="HMAC-SHA1", oauth_timestamp="1700000000", oauth_token="notimplemented", '
      .. 'oauth_version="1.0", oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"',
      sign("GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000))
  end)

  it("an instance's signer makes the header authorization makes, for every kind of input", function()
    local creds = {
      { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf44", token = "notimplemented", realm = "Zippy" },
      { consumer_key = "key with space&=", consumer_secret = "s/e+c r%t", token = "tok~1", token_secret = "ts &x" },
      { consumer_key = "k\195\169", consumer_secret = "", token = "", realm = "R \"x\"" },
    }
    local urls = { "http://127.0.0.1:2605/sellers", "HTTPS://Shop.Example:443/a/B", "http://h:1/p%20q/r",
      "http://h:1/products?seller_id=s%201&external_id=b&external_id=a", "https://h/x?oauth_nonce=zz&a" }
    local nonces = { "abc", "0123456789abcdef0123456789abcdef", "n o/n+c%e" }
    local n = 0
    for _, c in ipairs(creds) do
      local sign = oauth.signer(c)
      for _, method in ipairs { "GET", "post", "DELETE" } do
        for _, url in ipairs(urls) do
          for _, nonce in ipairs(nonces) do
            for _, ts in ipairs { 1700000000, "1764600000" } do
              local want = oauth.authorization { method = method, url = url, consumer_key = c.consumer_key,
                consumer_secret = c.consumer_secret, token = c.token, token_secret = c.token_secret,
                realm = c.realm, nonce = nonce, timestamp = ts }
              assert.are.equal(want, sign(method, url, nonce, ts))
              assert.are.equal(want, sign(method, url, nonce, ts)) -- the kept URL gives the same
              n = n + 1
            end
          end
        end
      end
    end
    assert.are.equal(3 * 3 * 5 * 3 * 2, n)
  end)

  it("an instance's signer refuses a URL that is not absolute, as base_string does", function()
    local sign = oauth.signer { consumer_key = "k", consumer_secret = "s", token = "t" }
    local h, err = sign("GET", "/sellers", "n", 1)
    assert.is_nil(h)
    assert.are.equal("not an absolute URL", err)
  end)

  it("gives a different signature for another secret", function()
    assert.are_not.equal("467mnp5J8iEZ/5XGoc2Qz1jqA6s=", oauth.signature(VECTOR_BASE, "kd94hf93k423kf45"))
  end)
end)

describe("zippy signed notices", function()
  local signed = NOTICE_QS .. "&sig=0:" .. NOTICE_SIG

  it("signs the zippy-notes vector (starts 2b1b112b, ends 4b00e7a)", function()
    local s = notice.sign({ { "ext_transaction_id", "webpay xyz/2&a=b" }, { "error", "CC_ERROR" } }, 0, KEYS[0])
    assert.are.equal(signed, s)
    -- the sheet publishes only the ends of the HMAC: check them on what sign() produced
    local sig = s:match("&sig=0:(%x+)$")
    assert.are.equal("2b1b112b", sig:sub(1, 8))
    assert.are.equal("4b00e7a", sig:sub(-7))
  end)

  it("verifies the vector and only then decodes the fields", function()
    local map = assert(notice.verify(signed, KEYS))
    assert.are.equal("webpay xyz/2&a=b", map.ext_transaction_id)
    assert.are.equal("CC_ERROR", map.error)
  end)

  local function refused(raw, code, keys)
    local map, err = notice.verify(raw, keys or KEYS)
    assert.is_nil(map)
    assert.are.equal("signature", err.kind)
    assert.are.equal(code, err.code)
  end

  it("refuses a notice without a signature as unsigned", function()
    refused(NOTICE_QS, "unsigned")
    refused("", "unsigned")
    refused(nil, "unsigned")
  end)

  it("refuses a malformed sig as malformed", function()
    refused(NOTICE_QS .. "&sig=" .. NOTICE_SIG, "malformed")
    refused(NOTICE_QS .. "&sig=0:" .. NOTICE_SIG:sub(2), "malformed")
    refused(NOTICE_QS .. "&sig=x:" .. NOTICE_SIG, "malformed")
    refused(NOTICE_QS .. "&sig=0:" .. NOTICE_SIG .. "&more=1", "malformed")
  end)

  it("refuses a key id that is not configured as unknown_key", function()
    refused(NOTICE_QS .. "&sig=7:" .. NOTICE_SIG, "unknown_key")
    refused(signed, "unknown_key", { [1] = KEYS[1] })
  end)

  it("refuses a tampered notice as bad_signature", function()
    refused(signed:gsub("CC_ERROR", "CC_ERRO0"), "bad_signature")
    refused("ext_transaction_id=other&error=CC_ERROR&sig=0:" .. NOTICE_SIG, "bad_signature")
    refused(NOTICE_QS .. "&sig=0:" .. NOTICE_SIG:sub(1, 63) .. "0", "bad_signature")
    refused(NOTICE_QS .. "&sig=1:" .. NOTICE_SIG, "bad_signature")
  end)

  it("does not accept a re-encoding of the same fields (the raw bytes are signed)", function()
    local reencoded = "ext_transaction_id=webpay+xyz%2F2%26a%3Db&error=CC_ERROR&sig=0:" .. NOTICE_SIG
    refused(reencoded, "bad_signature")
  end)

  it("splits at the last &sig= so a field may contain the text &sig=", function()
    local s = notice.sign({ { "ext_transaction_id", "a&sig=0:ff" } }, 1, KEYS[1])
    local map = assert(notice.verify(s, KEYS))
    assert.are.equal("a&sig=0:ff", map.ext_transaction_id)
    -- an attacker appending a second sig does not help
    refused(s .. "&sig=0:" .. NOTICE_SIG, "bad_signature")
  end)

  it("accepts every live key during a rotation", function()
    local old = notice.sign({ { "ext_transaction_id", "o-1" } }, 0, KEYS[0])
    local new = notice.sign({ { "ext_transaction_id", "o-1" } }, 1, KEYS[1])
    assert.are.equal("o-1", assert(notice.verify(old, KEYS)).ext_transaction_id)
    assert.are.equal("o-1", assert(notice.verify(new, KEYS)).ext_transaction_id)
    refused(old, "unknown_key", { [1] = KEYS[1] })
  end)

  it("finds the notice after the merchant's own parameters in a return URL", function()
    assert.are.equal(signed, notice.from_query("order=5&" .. signed))
    assert.are.equal(signed, notice.from_query("?" .. signed))
    assert.are.equal(signed, notice.from_query(signed))
  end)

  it("finds the notice after a '?' when the merchant's URL had a query (the reference server's redirect)", function()
    assert.are.equal(signed, notice.from_query("order=5?" .. signed))
    assert.are.equal(signed, notice.from_query("a=1&b=2?" .. signed))
    assert.are.equal(signed, notice.from_query("?order=5?" .. signed))
    -- a merchant parameter with the notice's name does not move the start
    assert.are.equal(signed, notice.from_query("ext_transaction_id=mine?" .. signed))
    assert.are.equal(signed, notice.from_query("ext_transaction_id=mine&" .. signed))
    -- a name that merely ends like it is not the notice
    assert.are.equal(signed, notice.from_query("my_ext_transaction_id=1&" .. signed))
    assert.are.equal("my_ext_transaction_id=1", notice.from_query("my_ext_transaction_id=1"))
  end)

  it("verifies exactly the notice's bytes: the merchant's prefix never joins the signed part", function()
    local map = assert(notice.verify(notice.from_query("order=5?" .. signed), KEYS))
    assert.are.equal("webpay xyz/2&a=b", map.ext_transaction_id)
    -- the same bytes with the prefix glued on are not what was signed
    refused("order=5?" .. signed, "bad_signature")
    refused("order=5&" .. signed, "bad_signature")
  end)

  it("takes the notice out of a callback body", function()
    assert.are.equal(signed, notice.from_body("signed_notice=" .. core.pct_encode(signed)))
    local _, err = notice.from_body("other=1")
    assert.are.equal("unsigned", err.code)
    _, err = notice.from_body("signed_notice=a&signed_notice=b")
    assert.are.equal("malformed", err.code)
  end)
end)

describe("zippy configuration", function()
  -- ISSUE9 item 1: the constructor answers nil, err (it raised before)
  local function bad(opts, field)
    local z, err = paykit.zippy(opts)
    assert.is_nil(z)
    assert.are.equal("config", err.kind)
    assert.are.equal(field, err.field)
    assert.is_nil(tostring(err):find("s3cr3t", 1, true))
  end

  it("requires consumer key, secret and an absolute base URL", function()
    bad({ consumer_secret = "s3cr3t", base_url = "http://h" }, "consumer_key")
    bad({ consumer_key = "k", base_url = "http://h" }, "consumer_secret")
    bad({ consumer_key = "k", consumer_secret = "s3cr3t", base_url = "/zippy" }, "base_url")
  end)

  it("fails at construction without notice_keys (a notice could never be verified)", function()
    bad({ consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h" }, "notice_keys")
    bad({ consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h", notice_keys = {} }, "notice_keys")
  end)

  it("refuses an unknown option, naming the closest known one", function()
    local z, err = paykit.zippy { consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h",
      notice_keys = KEYS, timeout_ms = 5000 }
    assert.is_nil(z)
    assert.are.equal("timeout_ms", err.field)
    assert.truthy(err.message:find("unknown option timeout_ms; did you mean timeout?", 1, true))
    z, err = paykit.zippy { consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h",
      notice_keys = KEYS, sucess_url = "https://shop.example/ok" }
    assert.is_nil(z)
    assert.truthy(err.message:find("did you mean success_url?", 1, true))
  end)

  it("says to use a colon when a method is called with a dot, and hides the module's functions", function()
    local z = assert(paykit.zippy { consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h", notice_keys = KEYS })
    local ok, err = pcall(z.purchase, {})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("zippy.purchase: call it with a colon, gw:purchase", 1, true))
    assert.is_nil(z.new)
    assert.is_nil(z.generate_test_notice)
  end)

  it("refuses an unknown field of purchase by its name", function()
    local z, calls = offline()
    local r, err = z:purchase(tx { ext_transaction_id = false, reference = "o-1", reurn_url = "https://shop.example/" })
    assert.is_nil(r)
    assert.are.equal("reurn_url", err.field)
    assert.are.equal("unknown_field", err.code)
    assert.truthy(err.message:find("did you mean return_url?", 1, true))
    assert.are.equal(0, calls.n)
  end)

  it("refuses malformed notice keys", function()
    bad({ consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h", notice_keys = { x = "a" } }, "notice_keys")
    bad({ consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h", notice_keys = { [0] = "" } }, "notice_keys")
  end)

  it("keeps the consumer secret and notice keys out of the instance's fields", function()
    local z = paykit.zippy { consumer_key = "k", consumer_secret = "s3cr3t", base_url = "http://h",
      notice_keys = { [0] = "n0t1ce" } }
    assert.is_table(z)
    for _, v in pairs(z) do
      if type(v) == "string" then
        assert.is_nil(v:find("s3cr3t", 1, true))
        assert.is_nil(v:find("n0t1ce", 1, true))
      end
    end
  end)
end)

describe("zippy validation before any network call", function()
  local function refused(over, field, code)
    local z, calls = offline()
    local res, err = z:create_transaction(tx(over))
    assert.is_nil(res)
    assert.are.equal("validation", err.kind)
    assert.are.equal(field, err.field)
    if code then assert.are.equal(code, err.code) end
    assert.are.equal(0, calls.n)
  end

  it("keeps every transaction field in the body (each name of TX_FIELDS), the defaults filling the URLs", function()
    local request = require "paykit.providers.zippy_request"
    local z = offline { success_url = "https://shop.example/d-ok", callback_error_url = "https://shop.example/d-cb" }
    local full = tx { product_image_url = "https://shop.example/i.png" }
    local body = assert(z:transaction_body(full))
    for k in pairs(request.TX_FIELDS) do
      if k ~= "price_minor" then assert.is_not_nil(body[k], k) end
    end
    local n = 0
    for _ in pairs(body) do n = n + 1 end
    assert.are.equal(12, n)
    body = assert(z:transaction_body(tx { success_url = false, callback_error_url = false }))
    assert.are.equal("https://shop.example/d-ok", body.success_url)
    assert.are.equal("https://shop.example/d-cb", body.callback_error_url)
    assert.are.equal("https://shop.example/error", body.error_url)
  end)

  it("accepts a valid transaction and sends the price as a 0.00 string", function()
    local z, calls = offline()
    assert.are.equal("0.89", assert(z:transaction_body(tx())).price)
    assert.are.equal("1.00", assert(z:transaction_body(tx { price = "1" })).price)
    assert.are.equal("0.05", assert(z:transaction_body(tx { price = false, price_minor = 5 })).price)
    assert.is_nil(assert(z:transaction_body(tx { price = false, price_minor = 5 })).price_minor)
    assert.are.equal("12345.60", assert(z:transaction_body(tx { price = "12345.6" })).price)
    assert.are.equal(0, calls.n)
  end)

  it("takes the purchase amount as a decimal string or amount_minor, never a Lua number", function()
    local z, calls = offline()
    local function purchase(over)
      local p = tx { price = false, ext_transaction_id = false, reference = "order-1" }
      for k, v in pairs(over) do p[k] = v end
      return z:purchase(p)
    end
    for _, c in ipairs {
      { { amount = 27 }, "amount", "number" }, { { amount = 0.27 }, "amount", "number" },
      { { amount_minor = 27.5 }, "amount_minor", "not_integer" }, { { amount_minor = -1 }, "amount_minor", "sign" },
      { { amount = "0.27", amount_minor = 27 }, "amount", "conflict" },
      { { amount_minor = 27, price = "0.27" }, "amount", "invalid" },
    } do
      local r, err = purchase(c[1])
      assert.is_nil(r)
      assert.are.equal(c[2], err.field)
      assert.are.equal(c[3], err.code)
    end
    assert.are.equal(0, calls.n)
  end)

  it("refuses prices that are not exact", function()
    refused({ price = "0.899" }, "price", "too_many_decimals")
    refused({ price = 0.89 }, "price", "number")
    refused({ price = 27 }, "price", "number")
    refused({ price_minor = 89 }, "price", "conflict")
    refused({ price = false, price_minor = 0.5 }, "price_minor", "not_integer")
    refused({ price = "1e2" }, "price")
    refused({ price = "-1.00" }, "price")
    refused({ price = "1,00" }, "price")
    refused({ price = "" }, "price", "empty")
    refused({ price = true }, "price", "invalid")
  end)

  it("refuses currencies the reference server does not take", function()
    refused({ currency = "JPY" }, "currency", "unsupported_currency")
    refused({ currency = "TRY" }, "currency", "unsupported_currency")
    refused({ currency = "eur" }, "currency", "unsupported_currency")
  end)

  it("accepts every currency of the reference server", function()
    local z = offline()
    for c in ("AUD CAD CHF COP DKK EGP EUR GBP HUF IDR MXN MYR NOK NZD PHP PLN QAR SEK SGD THB USD ZAR"):gmatch("%u+") do
      assert.are.equal("0.89", assert(z:transaction_body(tx { currency = c })).price)
    end
  end)

  it("refuses a pay_method other than CARD or OPERATOR", function()
    refused({ pay_method = "BITCOIN" }, "pay_method", "invalid")
  end)

  it("refuses URLs that are not absolute http(s)", function()
    refused({ success_url = "/success" }, "success_url", "invalid_url")
    refused({ error_url = "ftp://shop.example/e" }, "error_url", "invalid_url")
    refused({ callback_success_url = "javascript:alert(1)" }, "callback_success_url", "invalid_url")
    refused({ product_image_url = "image.png" }, "product_image_url", "invalid_url")
  end)

  it("requires every documented field", function()
    for _, f in ipairs { "product_id", "carrier", "ext_transaction_id", "region", "callback_error_url" } do
      local t = tx(); t[f] = nil
      local z, calls = offline()
      local res, err = z:create_transaction(t)
      assert.is_nil(res)
      assert.are.equal(f, err.field)
      assert.are.equal("required", err.code)
      assert.are.equal(0, calls.n)
    end
  end)

  it("refuses a non-numeric region and unknown fields", function()
    refused({ region = "EU" }, "region", "invalid")
    refused({ colour = "red" }, "colour", "unknown_field")
  end)

  it("takes the URLs from the instance's defaults", function()
    local z = offline { success_url = "https://d.example/s", error_url = "https://d.example/e",
      callback_success_url = "https://d.example/cs", callback_error_url = "https://d.example/ce" }
    local t = tx(); t.success_url, t.error_url, t.callback_success_url, t.callback_error_url = nil, nil, nil, nil
    local body = assert(z:transaction_body(t))
    assert.are.equal("https://d.example/s", body.success_url)
    assert.are.equal("https://d.example/e", body.error_url)
    assert.are.equal("https://d.example/cs", body.callback_success_url)
    assert.are.equal("https://d.example/ce", body.callback_error_url)
    -- a URL given with the transaction wins over the default
    assert.are.equal("https://shop.example/error", assert(z:transaction_body(tx())).error_url)
  end)

  it("checks seller and product fields", function()
    local z, calls = offline()
    local _, err = z:create_seller { uuid = "s", status = "OPEN", name = "n", email = "a@b.io" }
    assert.are.equal("status", err.field)
    _, err = z:create_seller { uuid = "s", status = "ACTIVE", name = "n", email = "nope" }
    assert.are.equal("email", err.field)
    _, err = z:create_seller { uuid = "s", status = "ACTIVE", name = "n", email = "a@b.io", extra = 1 }
    assert.are.equal("unknown_field", err.code)
    _, err = z:create_product { uuid = "0f8fad5b-d9cb-469f-a165-70867728950e", name = "n", external_id = "e" }
    assert.are.equal("seller_id", err.field)
    _, err = z:get_seller("")
    assert.are.equal("uuid", err.field)
    assert.are.equal(0, calls.n)
  end)
end)

describe("zippy uniform flow, locally", function()
  it("complete() turns a signed success notice into a paid result", function()
    local z = offline()
    local signed = z:test_notice { ext_transaction_id = "order-9" }
    local r = assert(z:complete(signed, { ext_transaction_id = "order-9", amount = "0.89", currency = "EUR", uuid = "u" }))
    assert.are.equal("paid", r.status)
    assert.are.equal("order-9", r.reference)
    assert.are.equal("0.89", r.amount)
    assert.are.equal("u", r.provider_reference)
  end)

  it("complete() turns an error notice into a failed result, not an error", function()
    local z = offline()
    local r = assert(z:complete({ query = z:test_notice { ext_transaction_id = "o", error = "CC_ERROR" } },
      { ext_transaction_id = "o" }))
    assert.are.equal("failed", r.status)
    assert.are.equal("CC_ERROR", r.code)
  end)

  it("complete() needs what purchase kept for the buyer", function()
    local z = offline()
    local signed = z:test_notice { ext_transaction_id = "o-1" }
    for _, keep in ipairs { false, "o-1", {}, { ext_transaction_id = "" }, { uuid = "u" } } do
      local r, err = z:complete(signed, keep or nil)
      assert.is_nil(r)
      assert.are.equal("keep", err.field)
    end
  end)

  it("complete() refuses a valid notice for another transaction", function()
    local z = offline()
    local _, err = z:complete(z:test_notice { ext_transaction_id = "o-1" }, { ext_transaction_id = "o-2" })
    assert.are.equal("signature", err.kind)
    assert.are.equal("wrong_transaction", err.code)
  end)

  it("complete() needs the raw query string", function()
    local _, err = offline():complete({ ext_transaction_id = "o" }, { ext_transaction_id = "o" })
    assert.are.equal("raw_query_required", err.code)
    assert.are.equal("query", err.field)
  end)

  it("notification() answers 200 OK and recognises a duplicate", function()
    local z = offline()
    local _, body = zippy.generate_test_notice { key = KEYS[1], key_id = 1, ext_transaction_id = "o-5" }
    local r, reply = z:notification { method = "POST", body = body }
    assert.are.equal("paid", r.status)
    assert.are.same({ status = 200, body = "OK", content_type = "text/plain" }, reply)
    assert.is_false(r.duplicate)
    r = z:notification { method = "POST", body = body }
    assert.is_true(r.duplicate)
  end)

  it("notification() dedupes per payment, through a store shared by instances", function()
    local store = require("paykit.kit.notify").memory()
    local a, b = offline { store = store }, offline { store = store }
    local _, paid = zippy.generate_test_notice { key = KEYS[1], key_id = 1, ext_transaction_id = "o-6" }
    local _, failed = zippy.generate_test_notice { key = KEYS[1], key_id = 1, ext_transaction_id = "o-6", error = "CC_ERROR" }
    assert.is_false(assert(a:notification { body = paid }).duplicate)
    local r = assert(b:notification(failed)) -- the raw body as a string; another outcome of one payment
    assert.is_true(r.duplicate)
    assert.are.equal("paid", r.first_status)
    assert.is_true(assert(a:notification { fields = { signed_notice = (paid:gsub("^signed_notice=", "")):gsub("%%(%x%x)",
      function(h) return string.char(tonumber(h, 16)) end) } }).duplicate)
  end)

  it("notification() records nothing and answers 503 when the store does not answer", function()
    local down = { get = function() return nil end,
                   add = function() return nil, require("paykit.errors").transport("store_unavailable", "store down") end }
    local z = offline { store = down }
    local _, body = zippy.generate_test_notice { key = KEYS[1], key_id = 1, ext_transaction_id = "o-7" }
    local r, err, reply = z:notification { body = body }
    assert.is_nil(r)
    assert.are.equal("store_unavailable", err.code)
    assert.are.equal(503, reply.status)
    local none, e2 = paykit.zippy { consumer_key = "k", consumer_secret = "s", base_url = "http://h", notice_keys = KEYS,
      store = { get = function() end } }
    assert.is_nil(none)
    assert.are.equal("store", e2.field)
  end)

  it("notification() rejects forged callbacks with distinct codes", function()
    local z = offline()
    local signed = zippy.generate_test_notice { key = "not-the-key", key_id = 0, ext_transaction_id = "o" }
    local cases = {
      { "signed_notice=" .. core.pct_encode(signed), "bad_signature" },
      { "signed_notice=" .. core.pct_encode("ext_transaction_id=o"), "unsigned" },
      { "signed_notice=" .. core.pct_encode("ext_transaction_id=o&sig=9:" .. NOTICE_SIG), "unknown_key" },
      { "signed_notice=" .. core.pct_encode("ext_transaction_id=o&sig=0:zz"), "malformed" },
      { "", "unsigned" },
    }
    for _, c in ipairs(cases) do
      local r, err, reply = z:notification { method = "POST", body = c[1] }
      assert.is_nil(r)
      assert.are.equal("signature", err.kind)
      assert.are.equal(c[2], err.code)
      assert.are.equal(400, reply.status)
    end
  end)

  it("test_notice() signs with the newest key, or the one asked for", function()
    local z = offline()
    assert.truthy(z:test_notice { ext_transaction_id = "o" }:find("&sig=1:", 1, true))
    assert.truthy(z:test_notice { ext_transaction_id = "o", key_id = 0 }:find("&sig=0:", 1, true))
    local _, err = z:test_notice { key_id = 5 }
    assert.are.equal("unknown_key", err.code)
  end)

  it("status() says honestly that Zippy has no lookup", function()
    local z, calls = offline()
    local r, err = z:status("order-1")
    assert.is_nil(r)
    assert.are.equal("unsupported", err.code)
    assert.are.equal(0, calls.n)
  end)

  it("builds the payment page URL from the token", function()
    local z = offline()
    assert.are.equal("http://127.0.0.1:9/zippy/payment/start?tx=abc123", z:payment_url("abc123"))
  end)
end)
