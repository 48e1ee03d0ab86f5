-- The Zippy client end to end against the sandbox over real HTTP: every API call, error
-- mapping, the card and carrier trips with the browser return and the callback, key rotation,
-- and that no secret or card data reaches a log line.
local core = require "paykit.core"
local cjson = require "cjson.safe"
local sb = require "spec.support.sandbox"
local zs = require "spec.zippy_support"
local sandbox = zs.sandbox

describe("zippy client on the sandbox", function()
  lazy_setup(function() sb.start() end)
  lazy_teardown(function() sb.stop() end)

  describe("API calls", function()
    it("answers GET /status", function()
      assert.is_true(zs.client():ping())
    end)

    it("creates, gets, lists, updates and deletes sellers", function()
      local z = zs.client()
      local uuid = zs.id("seller")
      local s = assert(z:create_seller { uuid = uuid, status = "ACTIVE", name = "Shop", email = "s@example.org",
        agreement = "2024-03-01" })
      assert.are.equal(uuid, s.resource_pk)
      assert.are.equal("Shop", assert(z:get_seller(uuid)).name)
      local seen = false
      for _, x in ipairs(assert(z:list_sellers())) do seen = seen or x.uuid == uuid end
      assert.is_true(seen)
      assert.are.equal("Shop 2", assert(z:update_seller(uuid, { name = "Shop 2" })).name)
      assert.are.equal("2024-03-01", assert(z:get_terms(uuid)).agreement)
      assert.is_true(assert(z:delete_seller(uuid)))
      local _, err = z:get_seller(uuid)
      assert.are.equal("not_found", err.code)
      assert.are.equal(404, err.status)
      assert.are.equal("ResourceNotFoundError", err.provider_code)
    end)

    it("creates products and lists them by seller and external id", function()
      local z = zs.client()
      local seller, product = zs.product(z)
      local p = assert(z:get_product(product))
      assert.are.equal("ACTIVE", p.status)
      local list = assert(z:list_products { seller_id = seller, external_id = p.external_id })
      assert.are.equal(1, #list)
      assert.are.equal(product, list[1].uuid)
      assert.are.equal(1, #assert(z:list_products { seller_id = seller }))
    end)

    it("maps a uuid clash to a conflict error", function()
      local z = zs.client()
      local seller = zs.product(z)
      local _, err = z:create_seller { uuid = seller, status = "ACTIVE", name = "x", email = "x@example.org" }
      assert.are.equal("provider", err.kind)
      assert.are.equal("conflict", err.code)
      assert.are.equal(409, err.status)
      assert.are.equal("ConflictError", err.provider_code)
    end)

    it("keeps InvalidArgumentError's messages per field", function()
      local z = zs.client()
      local seller = zs.id("seller")
      assert(z:create_seller { uuid = seller, status = "INACTIVE", name = "x", email = "x@example.org" })
      local _, err = z:create_product { uuid = zs.id(), name = "n", external_id = "e", seller_id = seller }
      assert.are.equal("validation", err.kind)
      assert.are.equal("invalid_argument", err.code)
      assert.are.equal("seller_id", err.field)
      assert.are.equal("This seller is not ACTIVE.", err.fields.seller_id)
    end)

    it("gives err.fields.price when the server refuses the price", function()
      local z = zs.client()
      -- bypass the client's own validation to see the server's answer mapped
      local _, err = z:call("POST", "/transactions", { body = { price = "1.5" } })
      assert.are.equal("This field must be in the format of 0.00.", err.fields.price)
      assert.are.equal("This field is required.", err.fields.product_id)
    end)

    it("maps 401 to a config error about the credentials", function()
      local z = zs.client { consumer_secret = "wrong-secret" }
      local _, err = z:list_sellers()
      assert.are.equal("config", err.kind)
      assert.are.equal("invalid_credentials", err.code)
      assert.are.equal(401, err.status)
      local _, err2 = zs.client { clock = function() return os.time() - 7200 end }:list_sellers()
      assert.are.equal("invalid_credentials", err2.code)
    end)

    it("maps a 500 to a provider server_error", function()
      local z = zs.client()
      local _, product = zs.product(z)
      local _, err = z:create_transaction(zs.tx_fields(product, "e500", { ext_transaction_id = "sandbox-fail-500" }))
      assert.are.equal("server_error", err.code)
      assert.are.equal(500, err.status)
    end)

    it("creates a transaction with every documented field", function()
      local z = zs.client()
      local _, product = zs.product(z)
      local t = zs.tx_fields(product, "full", { product_image_url = "http://127.0.0.1/image.jpg", price_minor = 1250,
        currency = "USD", pay_method = "OPERATOR", region = "310", carrier = "ATT" })
      t.price = nil -- the price in minor units instead
      local tx = assert(z:create_transaction(t))
      assert.are.equal("12.50", tx.price)
      assert.are.equal("USD", tx.currency)
      assert.are.equal("http://127.0.0.1/image.jpg", tx.product_image_url)
      assert.are.equal("STARTED", tx.status)
      assert.are.equal(128, #tx.token)
    end)

    it("asks Zippy to check a notice", function()
      local z = zs.client()
      local good = z:test_notice { ext_transaction_id = "o-1" }
      assert.is_true(z:check_notice(good))
      local ok, reason = z:check_notice((good:gsub("o%-1", "o-2")))
      assert.is_false(ok)
      assert.are.equal("signature mismatch", reason)
    end)
  end)

  describe("buyer's trip", function()
    local function start(z, tag, over)
      local _, product = zs.product(z)
      local p = zs.tx_fields(product, tag, over)
      p.amount, p.price = p.price, nil
      p.reference, p.ext_transaction_id = p.ext_transaction_id .. " a/b&c", nil
      local r = assert(z:purchase(p))
      assert.are.equal("redirect", r.status)
      assert.are.equal("GET", r.method)
      assert.are.equal(zs.base() .. "/payment/start?tx=" .. r.keep.token, r.redirect_url)
      assert.are.equal(p.reference, r.keep.ext_transaction_id)
      return r, p
    end

    local function callback(z, name)
      local log = zs.sink_log(name)
      local last = log[#log]
      assert.is_table(last, "no callback reached " .. name)
      return z:notification { method = last.method, body = last.body, query = last.query, headers = last.headers }
    end

    it("card approved: complete() is paid, the callback is paid, a repeat is a duplicate", function()
      local z = zs.client()
      local tag = zs.id("card")
      local r, p = start(z, tag)
      local res = zs.pay_by_card(r.redirect_url, "4111111111111111")
      assert.are.equal(301, res.status)
      local result = assert(z:complete(zs.query_of(res.headers.location), r.keep))
      assert.are.equal("paid", result.status)
      assert.are.equal(p.reference, result.reference)
      assert.are.equal("0.89", result.amount)
      assert.are.equal("EUR", result.currency)
      assert.are.equal(r.keep.uuid, result.provider_reference)
      local cb, reply = callback(z, tag .. "-cbok")
      assert.are.equal("paid", cb.status)
      assert.are.equal(p.reference, cb.reference)
      assert.are.same({ status = 200, body = "OK", content_type = "text/plain" }, reply)
      assert.is_true((callback(z, tag .. "-cbok")).duplicate)
    end)

    it("card declined: a failed result with CC_ERROR, on both paths", function()
      local z = zs.client()
      local tag = zs.id("decl")
      local r = start(z, tag)
      local res = zs.pay_by_card(r.redirect_url, sandbox.DECLINE_CARD)
      local result = assert(z:complete({ query = zs.query_of(res.headers.location) }, r.keep))
      assert.are.equal("failed", result.status)
      assert.are.equal("CC_ERROR", result.code)
      local cb = assert(callback(z, tag .. "-cberr"))
      assert.are.equal("failed", cb.status)
      assert.are.equal("CC_ERROR", cb.code)
    end)

    it("carrier billing: phone, PIN, paid", function()
      local z = zs.client()
      local tag = zs.id("op")
      local r = start(z, tag, { pay_method = "OPERATOR" })
      local res = zs.pay_by_phone(r.redirect_url, "+15551234567", sandbox.APPROVE_PIN)
      assert.are.equal(301, res.status)
      assert.are.equal("paid", assert(z:complete(zs.query_of(res.headers.location), r.keep)).status)
      assert.are.equal("paid", assert(callback(z, tag .. "-cbok")).status)
    end)

    it("carrier billing with a wrong PIN fails with DIR_BILL_ERROR", function()
      local z = zs.client()
      local tag = zs.id("opf")
      local r = start(z, tag, { pay_method = "OPERATOR" })
      local res = zs.pay_by_phone(r.redirect_url, "+15551234567", "0000")
      local result = assert(z:complete(zs.query_of(res.headers.location), r.keep))
      assert.are.equal("DIR_BILL_ERROR", result.code)
      assert.are.equal("failed", assert(callback(z, tag .. "-cberr")).status)
    end)

    it("rejects a tampered return and a tampered callback", function()
      local z = zs.client()
      local tag = zs.id("tamp")
      local r = start(z, tag)
      local res = zs.request("POST", zs.base() .. "/_sandbox/pay", cjson.encode { token = r.keep.token, outcome = "CC_ERROR" })
      local tampered = res.json.signed_notice:gsub("&error=CC_ERROR", "")
      local _, err = z:complete(tampered, r.keep)
      assert.are.equal("bad_signature", err.code)
      local log = zs.sink_log(tag .. "-cberr")
      local body = log[#log].body:gsub("CC_ERROR", "CC_ERRO0")
      local result, err2, reply = z:notification { method = "POST", body = body }
      assert.is_nil(result)
      assert.are.equal("bad_signature", err2.code)
      assert.are.equal(400, reply.status)
    end)

    it("follows a key rotation: old key still live, removed key refused as unknown_key", function()
      finally(function() zs.request("POST", zs.base() .. "/_sandbox/keys", cjson.encode { sign_with = 1 }) end)
      zs.request("POST", zs.base() .. "/_sandbox/keys", cjson.encode { sign_with = 0 })
      local both = zs.client()
      local tag = zs.id("rot")
      local r = start(both, tag)
      local res = zs.request("POST", zs.base() .. "/_sandbox/pay", cjson.encode { token = r.keep.token })
      assert.are.equal("paid", assert(both:complete(zs.query_of(res.json.Location), r.keep)).status)
      local only_new = zs.client { notice_keys = { [1] = sandbox.NOTICE_KEYS[1] } }
      local _, err = only_new:complete(zs.query_of(res.json.Location), r.keep)
      assert.are.equal("unknown_key", err.code)
      local wrong = zs.client { notice_keys = { [0] = "an-old-secret" } }
      _, err = wrong:complete(zs.query_of(res.json.Location), r.keep)
      assert.are.equal("bad_signature", err.code)
    end)

    it("keeps the merchant's own success_url parameters apart from the notice", function()
      local z = zs.client()
      local tag = zs.id("qp")
      local r = start(z, tag, { success_url = sb.url() .. "/_sink/" .. tag .. "-ok?order=7" })
      local res = zs.request("POST", zs.base() .. "/_sandbox/pay", cjson.encode { token = r.keep.token })
      local q = zs.query_of(res.json.Location)
      assert.are.equal(1, q:find("order=7&ext_transaction_id=", 1, true))
      assert.are.equal("paid", assert(z:complete(q, r.keep)).status)
    end)
  end)

  describe("logs", function()
    it("never carry the consumer secret, notice keys or card data", function()
      local lines = {}
      local z = zs.client { logger = function(level, line) lines[#lines + 1] = level .. " " .. line end }
      local tag = zs.id("log")
      local _, product = zs.product(z)
      local r = assert(z:purchase(zs.tx_fields(product, tag)))
      local res = zs.pay_by_card(r.redirect_url, "4111111111111111", "12/39", "737")
      assert(z:complete(zs.query_of(res.headers.location), r.keep))
      z:notification { method = "POST", body = "signed_notice=forged" }
      z:list_sellers()
      zs.client { consumer_secret = "wrong-secret", logger = function(level, line) lines[#lines + 1] = line end }:list_sellers()
      assert.is_true(#lines > 5)
      local text = table.concat(lines, "\n") .. sb.error_log()
      for _, secret in ipairs { sandbox.CONSUMER_SECRET, sandbox.NOTICE_KEYS[0], sandbox.NOTICE_KEYS[1],
                                "wrong-secret", "4111111111111111", "cvc=737" } do
        assert.is_nil(text:find(secret, 1, true), secret .. " reached a log line")
      end
      assert.truthy(text:find("zippy.create_transaction", 1, true)) -- the log is really there
    end)
  end)
end)
