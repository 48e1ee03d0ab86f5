-- MoCoPay client: signing (published vector), validation, configuration, and the checks of the
-- buyer's return and of notifications that happen before any network call.
local mocopay = require "paykit.providers.mocopay"
local checks = require "paykit.kit.checks"
local signing = require "paykit.providers.mocopay_sign"
local paykit = require "paykit"
local errors = require "paykit.errors"
local core = require "paykit.core"

local VECTOR_PARAMS = { mcc = "228", mnc = "01", pid = "12000", userId = "123456789" }
local CLOSED = "http://127.0.0.1:1/mocopay" -- nothing listens on port 1

-- A client whose transport records every attempt (none should happen in this file).
local function offline(opts)
  local calls = {}
  opts = opts or {}
  local o = { api_key = "app1", api_secret = "this.is.a.secret", base_url = CLOSED,
              hooks = { before = function(ctx) calls[#calls + 1] = ctx end }, retry = false }
  for k, v in pairs(opts) do o[k] = v end
  return paykit.mocopay(o), calls
end

local function assert_error(kind, field, code, ok, err)
  assert.is_nil(ok)
  assert.is_true(errors.is(err), "expected a paykit error, got " .. tostring(err))
  assert.equal(kind, err.kind)
  if field then assert.equal(field, err.field) end
  if code then assert.equal(code, err.code) end
end

describe("mocopay signature", function()
  it("builds the published canonical string", function()
    assert.equal("/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789",
      mocopay.canonical("/v1/payment/initPayment/", VECTOR_PARAMS))
  end)

  it("signs the published vector with MD5", function()
    assert.equal("WETDyNQLx0+8BJ16vDgiVg==", mocopay.sign("this.is.a.secret", "/v1/payment/initPayment/", VECTOR_PARAMS))
  end)

  it("gives the published {api_key}:{signature} value", function()
    assert.equal("app1:WETDyNQLx0+8BJ16vDgiVg==",
      mocopay.signature_value("app1", "this.is.a.secret", "/v1/payment/initPayment/", VECTOR_PARAMS))
  end)

  it("signs the same string with SHA-1 when asked (20 bytes, as the wire example)", function()
    local sig = mocopay.sign("this.is.a.secret", "/v1/payment/initPayment/", VECTOR_PARAMS, "sha1")
    assert.equal("RmIIy70wFf6SJP1wMkVzV6aKp8k=", sig) -- openssl sha1 -binary | base64
    assert.equal(28, #sig)
  end)

  it("changes when a value, the path or the secret changes", function()
    local base = mocopay.sign("this.is.a.secret", "/v1/payment/initPayment/", VECTOR_PARAMS)
    local p = { mcc = "228", mnc = "02", pid = "12000", userId = "123456789" }
    assert.not_equal(base, mocopay.sign("this.is.a.secret", "/v1/payment/initPayment/", p))
    assert.not_equal(base, mocopay.sign("this.is.a.secret", "/v1/payment/initPayment", VECTOR_PARAMS))
    assert.not_equal(base, mocopay.sign("this.is.a.secreT", "/v1/payment/initPayment/", VECTOR_PARAMS))
  end)

  it("leaves out the signature parameter and sorts names in byte order", function()
    assert.equal("/p?B=2&_=4&a=3&b=1",
      mocopay.canonical("/p", { b = "1", B = "2", a = "3", _ = "4", signature = "k:x" }))
  end)

  it("accepts a list of pairs and repeated names", function()
    assert.equal("/p?a=1&a=2&z=0", mocopay.canonical("/p", { { "z", "0" }, { "a", "2" }, { "a", "1" } }))
    assert.equal("/p?a=1&a=2", mocopay.canonical("/p", { a = { "2", "1" } }))
  end)

  it("signs raw values by default and percent-encoded ones when asked", function()
    local p = { referenceId = "order 7&x=1", callbackUrl = "https://shop.example/back?a=1" }
    assert.equal("/p?callbackUrl=https://shop.example/back?a=1&referenceId=order 7&x=1", mocopay.canonical("/p", p))
    assert.equal("/p?callbackUrl=https%3A%2F%2Fshop.example%2Fback%3Fa%3D1&referenceId=order%207%26x%3D1",
      mocopay.canonical("/p", p, true))
  end)

  it("refuses an unknown digest", function()
    assert.has_error(function() mocopay.sign("s", "/p", {}, "sha256") end)
    assert.has_error(function() signing.signer("s", "sha256") end)
  end)

  it("an instance's signer (secret and digest bound once) signs the published vector", function()
    local sign = signing.signer("this.is.a.secret")
    assert.equal("WETDyNQLx0+8BJ16vDgiVg==", sign("/v1/payment/initPayment/", signing.to_pairs(VECTOR_PARAMS)))
    assert.equal("RmIIy70wFf6SJP1wMkVzV6aKp8k=",
      signing.signer("this.is.a.secret", "sha1")("/v1/payment/initPayment/", signing.to_pairs(VECTOR_PARAMS)))
    assert.not_equal("WETDyNQLx0+8BJ16vDgiVg==",
      signing.signer("this.is.a.secreT")("/v1/payment/initPayment/", signing.to_pairs(VECTOR_PARAMS)))
  end)

  it("an instance's signer gives sign's signature for every kind of parameter list", function()
    local lists = {
      {}, { { "sessionId", "sess-1" } }, { { "signature", "k:x" } }, { { "signature", "k:x" }, { "b", "1" } },
      { { "z", "0" }, { "a", "2" }, { "a", "1" }, { "B", "x" }, { "_", "y" }, { "a", "1" } },
      { { "referenceId", "order 7&x=1" }, { "callbackUrl", "https://shop.example/back?a=1" }, { "k", "\195\169" } },
      VECTOR_PARAMS, { sessionId = "s" }, { { "n", 5 } }, -- not string pairs: the general way
    }
    for _, digest in ipairs { "md5", "sha1" } do
      for _, encode in ipairs { false, true } do
        local sign = signing.signer("sec ret", digest, encode)
        for i, l in ipairs(lists) do
          assert.equal(mocopay.sign("sec ret", "/v1/p", l, digest, encode), sign("/v1/p", l),
            digest .. " " .. tostring(encode) .. " list " .. i)
        end
      end
    end
  end)

  it("produces signed notification queries its own verifier accepts", function()
    local q = mocopay.signed_query("app1", "this.is.a.secret", "/notify", { sessionId = "abc", status = "Authorized" })
    assert.matches("^sessionId=abc&status=Authorized&signature=app1%%3A", q)
    -- past the signature check (a tampered copy is refused), on to verifyPayment
    local gw, calls = offline()
    local ok, err = gw:notification { path = "/notify", query = q }
    assert.is_nil(ok)
    assert.is_true(err.kind == "transport" or err.kind == "timeout", tostring(err))
    assert.equal(1, #calls)
    ok, err = gw:notification { path = "/notify", query = q:gsub("status=Authorized", "status=Authorizer") }
    assert.is_nil(ok)
    assert.equal("bad_signature", err.code)
  end)
end)

describe("mocopay address validators", function()
  it("knows all 249 ISO 3166-1 alpha-2 country codes and only those", function()
    local n = 0
    for _ in pairs(mocopay.COUNTRIES) do n = n + 1 end
    assert.equal(249, n)
    for _, c in ipairs { "HR", "TR", "US", "GB", "AX", "SS", "XK" } do
      assert.equal(c ~= "XK", mocopay.COUNTRIES[c] == true, c)
    end
    for _, c in ipairs { "UK", "XX", "EU", "ZZ", "AA" } do assert.is_nil(mocopay.COUNTRIES[c], c) end
  end)

  it("knows the 184 ISO 639-1 language codes and only those", function()
    local n = 0
    for _ in pairs(mocopay.LANGUAGES) do n = n + 1 end
    assert.equal(184, n)
    for _, c in ipairs { "en", "hr", "tr", "zh", "zu", "aa" } do assert.is_true(mocopay.LANGUAGES[c], c) end
    for _, c in ipairs { "xx", "jp", "dk", "qq", "ee1" } do assert.is_nil(mocopay.LANGUAGES[c], c) end
  end)

  it("accepts IPv4 addresses", function()
    for _, ip in ipairs { "192.0.2.1", "0.0.0.0", "255.255.255.255", "10.0.0.255", "1.2.3.4" } do
      assert.is_true(checks.is_ip(ip), ip)
      assert.is_true(checks.is_ipv4(ip), ip)
    end
  end)

  it("refuses malformed IPv4 addresses", function()
    for _, ip in ipairs { "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", " 1.2.3.4", "1.2.3.4 ",
                          "1..3.4", "a.b.c.d", "1.2.3.-4", "1234.1.1.1", "" } do
      assert.is_false(checks.is_ip(ip), ip)
    end
  end)

  it("accepts IPv6 addresses, with :: compression and embedded IPv4", function()
    for _, ip in ipairs { "::", "::1", "1::", "2001:db8::1", "2001:db8:0:0:0:0:2:1", "2001:DB8::8:800:200C:417A",
                          "fe80::1:2:3:4:5:6", "::ffff:192.0.2.1", "64:ff9b::192.0.2.33", "1:2:3:4:5:6:1.2.3.4",
                          "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6::8", "::1.2.3.4",
                          "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789", "0:0:0:0:0:0:0:0" } do
      assert.is_true(checks.is_ip(ip), ip)
      assert.is_true(checks.is_ipv6(ip), ip)
    end
  end)

  it("refuses malformed IPv6 addresses", function()
    for _, ip in ipairs { "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::1", "1:::2", "12345::1",
                          ":1::2", ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
                          "::ffff:256.1.1.1", "1.2.3.4::", "::1.2.3", "::1.2.3.4:5", "fe80::1%eth0", "[::1]",
                          "g::1", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5:1.2.3.4", ":", "::01.2.3.4", "1: :2" } do
      assert.is_false(checks.is_ip(ip), ip)
    end
  end)

  it("accepts absolute http(s) URLs and refuses the rest", function()
    for _, u in ipairs { "https://shop.example/back?x=1", "http://127.0.0.1:8080/n", "http://[::1]:8080/x",
                         "HTTPS://Shop.Example", "http://localhost" } do
      assert.is_true(checks.is_http_url(u), u)
    end
    for _, u in ipairs { "ftp://x.example/", "/relative", "http://", "http:// shop.example", "javascript:alert(1)",
                         "http://shop.example:0/", "http://shop.example:70000/", "http://user:pw@shop.example/",
                         "http://[1::2::3]/", "shop.example/back", "http://a..b/", "https://x.example/\n" } do
      assert.is_false(checks.is_http_url(u), u)
    end
  end)
end)

describe("mocopay initPayment validation", function()
  local function init(params)
    local gw, calls = offline()
    local ok, err = gw:init_payment(params)
    assert.equal(0, #calls, "no request may be sent for invalid parameters")
    return ok, err
  end

  local function refused(field, code, params)
    assert_error("validation", field, code, init(params))
  end

  it("requires pid", function()
    refused("pid", "required", { mcc = "228" })
    refused("pid", "invalid", { pid = "" })
    refused("pid", "invalid_type", { pid = 12000 })
  end)

  it("wants mcc as 3 digits", function()
    for _, v in ipairs { "22", "2281", "22a", " 228" } do refused("mcc", "invalid", { pid = "1", mcc = v }) end
  end)

  it("wants mnc as 2 or 3 digits", function()
    for _, v in ipairs { "1", "0001", "0a", "" } do refused("mnc", "invalid", { pid = "1", mnc = v }) end
  end)

  it("wants an assigned ISO 3166 country code, in capitals", function()
    for _, v in ipairs { "XX", "UK", "hr", "HRV", "H" } do refused("country", "invalid", { pid = "1", country = v }) end
  end)

  it("wants an ISO 639-1 language code, in small letters", function()
    for _, v in ipairs { "xx", "EN", "eng", "e" } do refused("lang", "invalid", { pid = "1", lang = v }) end
  end)

  it("wants absolute http(s) URLs", function()
    for _, name in ipairs { "callbackUrl", "notifyUrl", "imageUrl" } do
      for _, v in ipairs { "/back", "ftp://x.example/a", "https://", "mailto:a@b.c" } do
        refused(name, "invalid", { pid = "1", [name] = v })
      end
    end
  end)

  it("wants clientIp to be an IPv4 or IPv6 address", function()
    for _, v in ipairs { "1.2.3", "300.1.1.1", "1::2::3", "localhost", "::1%lo" } do
      refused("clientIp", "invalid", { pid = "1", clientIp = v })
    end
  end)

  it("wants phone as digits with an optional +", function()
    for _, v in ipairs { "abc", "+1", "++385911", "385 91 123", string.rep("1", 22) } do
      refused("phone", "invalid", { pid = "1", phone = v })
    end
  end)

  it("refuses control characters and over-long references", function()
    refused("userId", "invalid", { pid = "1", userId = "a\nb" })
    refused("referenceId", "invalid", { pid = "1", referenceId = string.rep("r", 256) })
    refused("referenceId", "invalid", { pid = "1", referenceId = "" })
  end)

  it("refuses parameters MoCoPay does not have", function()
    refused("amount", "unknown_field", { pid = "1", amount = "10" })
  end)

  it("accepts every documented parameter when valid", function()
    local ok = mocopay.validate_init { pid = "12000", mcc = "219", mnc = "01", country = "HR", userId = "u1",
      clientIp = "2001:db8::1", phone = "+385911234567", lang = "hr", referenceId = "order-1",
      callbackUrl = "https://shop.example/back", notifyUrl = "https://shop.example/n", imageUrl = "https://cdn.example/i.png" }
    assert.is_true(ok)
  end)

  it("names the caller's field in purchase", function()
    local gw, calls = offline()
    assert_error("validation", "client_ip", "invalid", gw:purchase { pid = "1", client_ip = "1.2.3.999" })
    assert_error("validation", "return_url", "invalid", gw:purchase { pid = "1", return_url = "back.html" })
    assert_error("validation", "colour", "unknown_field", gw:purchase { pid = "1", colour = "red" })
    assert_error("validation", "pid", "required", gw:purchase { reference = "r" })
    assert.equal(0, #calls)
  end)
end)

describe("mocopay verifyPayment arguments", function()
  it("takes exactly one of sessionId, userId, transactionId", function()
    local gw, calls = offline()
    assert_error("validation", "sessionId", "required", gw:verify_payment {})
    local ok, err = gw:verify_payment { sessionId = "a", userId = "b" }
    assert_error("validation", nil, "exclusive", ok, err)
    assert_error("validation", "transactionId", "invalid", gw:verify_payment { transactionId = "" })
    assert_error("validation", "order", "unknown_field", gw:verify_payment { order = "x" })
    assert.equal(0, #calls)
  end)
end)

describe("mocopay configuration", function()
  -- issue 7 (ISSUE9): the constructor answers nil, err instead of raising
  local function config_error(field, opts)
    local gw, err = paykit.mocopay(opts)
    assert.is_nil(gw)
    assert.is_true(errors.is(err), tostring(err))
    assert.equal("config", err.kind)
    assert.equal(field, err.field)
    assert.is_nil(tostring(err):find("s3cr3t", 1, true))
  end

  it("requires credentials and a base URL", function()
    config_error("api_key", { api_secret = "s3cr3t", base_url = CLOSED })
    config_error("api_secret", { api_key = "k", base_url = CLOSED })
    config_error("api_secret", { api_key = "k", api_secret = 42, base_url = CLOSED })
    config_error("base_url", { api_key = "k", api_secret = "s3cr3t" })
    config_error("base_url", { api_key = "k", api_secret = "s3cr3t", base_url = "127.0.0.1/mocopay" })
  end)

  it("refuses an unknown option, naming the closest known one", function()
    config_error("timeout_ms", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, timeout_ms = 5 })
    local _, err = paykit.mocopay { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, timeout_ms = 5 }
    assert.equal("unknown_option", err.code)
    assert.truthy(err.message:find("did you mean timeout?", 1, true), err.message)
    _, err = paykit.mocopay { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, notify_ur = "https://shop/n" }
    assert.truthy(err.message:find("did you mean notify_url?", 1, true), err.message)
    config_error("timeout", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, timeout = 5000 })
    config_error("amount_unit", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, amount_unit = "cents" })
    config_error("paths", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, paths = { inti = "/x" } })
    config_error("base_url", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED .. "?x=1" })
  end)

  it("knows only md5 and sha1 digests, header and param signatures", function()
    config_error("digest", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, digest = "sha256" })
    config_error("signature_in", { api_key = "k", api_secret = "s3cr3t", base_url = CLOSED, signature_in = "cookie" })
  end)

  it("keeps the secret out of the instance's fields", function()
    local gw = offline { api_secret = "s3cr3t-value" }
    local seen = {}
    local function scan(t)
      if seen[t] then return end
      seen[t] = true
      for k, v in pairs(t) do
        assert.not_equal("s3cr3t-value", k)
        assert.not_equal("s3cr3t-value", v)
        if type(v) == "table" then scan(v) end
      end
    end
    scan(gw)
    assert.is_nil(tostring(gw):find("s3cr3t", 1, true))
  end)
end)

describe("mocopay buyer's return checks", function()
  local keep = { request_id = "9bf849fd215542088fa5c98b99a185a2", reference_id = "20162016", pid = "12000" }
  local ret = "sid=8903cf28aa3940f0b31d699fea5aa7ff&sessionId=8903cf28aa3940f0b31d699fea5aa7ff"
    .. "&requestId=9bf849fd215542088fa5c98b99a185a2&referenceId=20162016&status=PaymentComplete"

  it("refuses a return for another request", function()
    local gw, calls = offline()
    assert_error("signature", nil, "request_mismatch", gw:complete(ret:gsub("requestId=9b", "requestId=0b"), keep))
    assert.equal(0, #calls)
  end)

  it("refuses a return for another reference", function()
    local gw = offline()
    assert_error("signature", nil, "reference_mismatch", gw:complete(ret:gsub("referenceId=20162016", "referenceId=1"), keep))
  end)

  it("refuses a return whose sid and sessionId differ", function()
    local gw = offline()
    assert_error("signature", nil, "session_mismatch", gw:complete(ret:gsub("^sid=89", "sid=00"), keep))
  end)

  it("requires every redirection parameter and the kept values", function()
    local gw = offline()
    assert_error("validation", "status", "required", gw:complete(ret:gsub("&status=PaymentComplete", ""), keep))
    assert_error("validation", "keep", "invalid", gw:complete(ret, { request_id = "x" }))
  end)

  it("asks verifyPayment about a cancelled return too", function()
    local gw, calls = offline()
    local ok, err = gw:complete(ret:gsub("PaymentComplete", "PaymentCancelled"), keep)
    assert.is_nil(ok)
    assert.is_true(err.kind == "transport" or err.kind == "timeout")
    assert.equal(1, #calls)
  end)

  it("with confirm_return off, takes a cancelled or expired return as failed and PaymentComplete as pending, without a call", function()
    local gw, calls = offline { confirm_return = false }
    local pending = assert(gw:complete(ret, keep))
    assert.equal("pending", pending.status)
    assert.is_false(pending.bound)
    local r = assert(gw:complete(ret:gsub("PaymentComplete", "PaymentCancelled"), keep))
    assert.equal("failed", r.status)
    assert.equal("PaymentCancelled", r.code)
    assert.equal("20162016", r.reference)
    assert.equal("8903cf28aa3940f0b31d699fea5aa7ff", r.provider_reference)
    r = assert(gw:complete({ sid = "s", sessionId = "s", requestId = keep.request_id, referenceId = "20162016",
                             status = "PaymentExpired" }, keep))
    assert.equal("failed", r.status)
    assert.equal(0, #calls)
  end)

  it("does not trust PaymentComplete without asking verifyPayment", function()
    local gw, calls = offline()
    local ok, err = gw:complete(ret, keep)
    assert.is_nil(ok)
    assert.is_true(err.kind == "transport" or err.kind == "timeout")
    assert.equal(1, #calls)
    assert.matches("/mocopay/v1/payment/verifyPayment%?sessionId=8903cf28", calls[1].url)
  end)
end)

describe("mocopay notification checks", function()
  local PATH = "/shop/mocopay/notify"
  local params = { sessionId = "518ec5708a8842dba19993f01ef863b5", status = "Authorized", sessionType = "onetime",
                   referenceId = "order-1", phone = "+385911234567", chargedAmount = "10" }

  local function signed(p, key, secret)
    return mocopay.signed_query(key or "app1", secret or "this.is.a.secret", PATH, p or params)
  end

  it("refuses a notification whose parameter was changed after signing", function()
    local gw, calls = offline()
    local q = signed():gsub("status=Authorized", "status=Cancelled")
    local ok, err, reply = gw:notification { method = "GET", path = PATH, query = q }
    assert_error("signature", nil, "bad_signature", ok, err)
    assert.equal(401, reply.status)
    assert.equal(0, #calls)
  end)

  it("refuses a notification signed over another path", function()
    local gw = offline()
    local ok, err = gw:notification { method = "GET", path = "/other", query = signed() }
    assert_error("signature", nil, "bad_signature", ok, err)
  end)

  it("refuses a tampered signature", function()
    local gw = offline()
    local q = signed()
    local sig = q:match("signature=app1%%3A(.)")
    q = q:gsub("signature=app1%%3A.", "signature=app1%%3A" .. (sig == "A" and "B" or "A"))
    assert_error("signature", nil, "bad_signature", gw:notification { path = PATH, query = q })
  end)

  it("refuses another key's signature and a malformed one", function()
    local gw = offline()
    assert_error("signature", nil, "unknown_key", gw:notification { path = PATH, query = signed(nil, "app2", "other") })
    assert_error("signature", nil, "malformed", gw:notification { path = PATH, query = "sessionId=a&signature=nocolon" })
  end)

  it("refuses an unsigned notification when signatures are required", function()
    local gw = offline { require_signature = true }
    local ok, err, reply = gw:notification { path = PATH, query = "sessionId=a&status=Authorized" }
    assert_error("signature", "signature", "unsigned", ok, err) -- the kit's code (ISSUE9), was not_signed
    assert.equal(401, reply.status)
  end)

  it("confirms a correctly signed notification with verifyPayment before reporting it", function()
    local gw, calls = offline()
    local ok, err, reply = gw:notification { method = "GET", path = PATH, query = signed() }
    assert.is_nil(ok)
    assert.is_true(err.kind == "transport" or err.kind == "timeout")
    assert.equal(503, reply.status) -- MoCoPay should try again later
    assert.equal(1, #calls)
    assert.matches("verifyPayment%?sessionId=518ec570", calls[1].url)
  end)

  it("reads a \"+\" as itself or, form-encoded, as a space when checking the signature", function()
    for _, value in ipairs { "order+1", "order 1" } do
      local p = { sessionId = "518ec5708a8842dba19993f01ef863b5", status = "Authorized", referenceId = value }
      local sig = core.pct_encode(mocopay.signature_value("app1", "this.is.a.secret", PATH, p))
      local q = "sessionId=" .. p.sessionId .. "&status=Authorized&referenceId=order+1&signature=" .. sig
      local gw, calls = offline()
      local ok, err = gw:notification { path = PATH, query = q }
      assert.is_nil(ok)
      assert.not_equal("signature", err.kind, value)
      assert.equal(1, #calls, value)
    end
    local gw = offline()
    local q = mocopay.signed_query("app1", "this.is.a.secret", PATH, { sessionId = "a", referenceId = "order-1" })
    assert_error("signature", nil, "bad_signature", gw:notification { path = PATH, query = q:gsub("order%-1", "order+1") })
  end)

  it("takes the path from notify_url when the request does not say", function()
    local gw, calls = offline { notify_url = "https://shop.example" .. PATH }
    local ok, err = gw:notification { query = signed() }
    assert.is_nil(ok)
    assert.not_equal("signature", err.kind)
    assert.equal(1, #calls)
  end)

  it("answers 'in progress' for a notice another coroutine is verifying, where it cannot wait", function()
    local pause, sent = false, 0
    local gw = offline { hooks = { before = function()
      sent = sent + 1
      if pause then coroutine.yield("paused") end
    end } }
    local q = signed()
    local co = coroutine.create(function() return gw:notification { path = PATH, query = q } end)
    pause = true
    local _, state = coroutine.resume(co) -- suspended inside verifyPayment, holding the claim
    assert.equal("paused", state)
    pause = false
    local ok, err, reply = gw:notification { path = PATH, query = q }
    assert.is_nil(ok)
    assert.equal("in_progress", err.code)
    assert.is_true(err.retryable)
    assert.equal(503, reply.status)
    local _, r, cerr = coroutine.resume(co) -- verifyPayment fails (nothing listens): released
    assert.is_nil(r)
    assert.is_true(cerr.kind == "transport" or cerr.kind == "timeout")
    local before = sent
    ok, err = gw:notification { path = PATH, query = q } -- processed afresh
    assert.is_nil(ok)
    assert.not_equal("in_progress", err.code)
    assert.equal(before + 1, sent)
  end)

  it("needs a sessionId or transactionId", function()
    local gw = offline()
    assert_error("validation", "sessionId", "required", gw:notification { query = "status=Authorized" })
  end)
end)

describe("mocopay answers' amounts", function()
  local json = require "paykit.kit.json"
  local mwire = require "paykit.providers.mocopay_wire"

  it("reads each amount from its own member, as text (never the first match in the body)", function()
    local body = '{"sessionId":"s1","endUser":{"userId":"u","totalChargedAmount":5},' ..
      '"totalChargedAmount":199,"lastChargedAmount":12345678901234567,"currencyCode":"EUR","failedAmount":null}'
    local info = mocopay.payment_info(assert(json.decode(body, { exact = mwire.exact })))
    assert.equal("199", info.total_charged_amount)
    assert.equal("12345678901234567", info.last_charged_amount)
    assert.is_nil(info.failed_amount)
    assert.equal("u", info.end_user.user_id)
  end)

  it("formats an amount for its currency in the configured unit (UNCONFIRMED: minor by default)", function()
    assert.equal("1.99", mwire.amount("199", "EUR"))
    assert.equal("1.99", mwire.amount("199", "EUR", "minor"))
    assert.equal("199.00", mwire.amount("199", "EUR", "major"))
    assert.equal("1.99", mwire.amount("1.99", "EUR", "major"))
    assert.is_nil(mwire.amount("1.99", "EUR", "minor"))   -- a fraction of a minor unit
    assert.is_nil(mwire.amount("1.999", "EUR", "major"))  -- not exact in EUR
    assert.is_nil(mwire.amount("10", "TES"))              -- the API text's test currency: unknown
    assert.is_nil(mwire.amount(nil, "EUR"))
  end)
end)
