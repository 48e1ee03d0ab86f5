-- The Zippy client end to end against the sandbox over real HTTP: every API call, error
-- mapping, the card and carrier trips with the browser return and the callback, key rotation,
-- and that no secret or card data reaches a log line.
local core = require "paykit.core"
local cjson = require "cjson.safe"
local sb = require "spec.support.sandbox"
local zs = require "spec.support.zippy"
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
      assert.are.equal("ACTIVE", assert(z:get_seller(uuid)).status)
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

    it("maps a seller uuid clash to the uuid's invalid_argument", function()
      local z = zs.client()
      local seller = zs.product(z)
      local _, err = z:create_seller { uuid = seller, status = "ACTIVE", name = "x", email = "x@example.org" }
      assert.are.equal("validation", err.kind)
      assert.are.equal("invalid_argument", err.code)
      assert.are.equal(409, err.status)
      assert.are.equal("uuid", err.field)
      assert.are.equal("UUID must be unique", err.fields.uuid)
    end)

    it("maps a product uuid clash to a conflict error", function()
      local z = zs.client()
      local seller, product = zs.product(z)
      local _, err = z:create_product { uuid = product, name = "n", external_id = zs.id("ext"), seller_id = seller }
      assert.are.equal("provider", err.kind)
      assert.are.equal("conflict", err.code)
      assert.are.equal(409, err.status)
      assert.are.equal("ConflictError", err.provider_code)
    end)

    it("keeps the text of a 409 whose message is plain text, not a JSON map", function()
      local z = zs.client()
      local seller, product = zs.product(z)
      local ext = assert(z:get_product(product)).external_id
      local _, err = z:create_product { uuid = core.uuid4(), name = "n", external_id = ext, seller_id = seller }
      assert.are.equal("validation", err.kind)
      assert.are.equal("invalid_argument", err.code)
      assert.are.equal(409, err.status)
      assert.truthy(err.message:find("external_id must be unique per seller", 1, true), err.message)
      assert.are.equal("external_id must be unique per seller", err.provider_message)
      assert.are.equal("external_id", err.field)
      -- and an unknown field sent through call() (the client's own checks bypassed)
      local _, err2 = z:call("POST", "/sellers", { body = { uuid = zs.id(), status = "ACTIVE", name = "n",
        email = "n@example.org", colour = "red" } })
      assert.truthy(err2.message:find("Unrecognized fields: colour", 1, true), err2.message)
      assert.are.equal("colour", err2.field)
    end)

    it("keeps the text of a plain-text 500 (a PUT without uuid, sent raw through call())", function()
      local z = zs.client()
      local seller = zs.product(z)
      local _, err = z:call("PUT", "/sellers/" .. seller, { body = { name = "x" } })
      assert.are.equal("server_error", err.code)
      assert.are.equal(500, err.status)
      assert.are.equal("Server Error", err.provider_message)
      assert.truthy(err.message:find("Server Error", 1, true))
    end)

    it("updates a seller by reading, merging and sending the whole seller (PUT replaces it)", function()
      local z = zs.client()
      local uuid = zs.id("seller")
      assert(z:create_seller { uuid = uuid, status = "ACTIVE", name = "Shop", email = "s@example.org", agreement = "2024-03-01" })
      local updated = assert(z:update_seller(uuid, { name = "Shop 2" }))
      assert.are.equal("Shop 2", updated.name)
      local got = assert(z:get_seller(uuid))
      assert.are.equal("Shop 2", got.name)
      assert.are.equal("ACTIVE", got.status)
      assert.are.equal("s@example.org", got.email)
      assert.are.equal("2024-03-01", got.agreement)
      -- still ACTIVE, so it can still sell
      assert(z:create_product { uuid = core.uuid4(), name = "Thing", external_id = zs.id("ext"), seller_id = uuid })
      assert.are.equal("INACTIVE", assert(z:update_seller(uuid, { status = "INACTIVE", uuid = uuid })).status)
      assert.are.equal("Shop 2", assert(z:get_seller(uuid)).name)
    end)

    it("refuses an update whose body names another seller, and an unknown seller", function()
      local z = zs.client()
      local a, b = zs.product(z), zs.product(z)
      local _, err = z:update_seller(a, { uuid = b, name = "hijack" })
      assert.are.equal("validation", err.kind)
      assert.are.equal("uuid", err.field)
      assert.are.equal("Test shop", assert(z:get_seller(b)).name)
      _, err = z:update_seller(zs.id("nobody"), { name = "x" })
      assert.are.equal("not_found", err.code)
    end)

    it("keeps InvalidArgumentError's messages per field", function()
      local z = zs.client()
      local seller = zs.id("seller")
      assert(z:create_seller { uuid = seller, status = "INACTIVE", name = "x", email = "x@example.org" })
      local _, err = z:create_product { uuid = core.uuid4(), name = "n", external_id = "e", seller_id = seller }
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
      -- the reference plus "~" and 12 random hex digits: one transaction's id alone
      assert.are.equal(p.reference, r.keep.reference)
      assert.are.equal(p.reference .. "~", r.keep.ext_transaction_id:sub(1, #p.reference + 1))
      assert.truthy(r.keep.ext_transaction_id:sub(#p.reference + 2):match("^" .. ("%x"):rep(12) .. "$"))
      assert.are.equal(r.keep.ext_transaction_id, r.reference)
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
      local r = start(z, tag)
      local res = zs.pay_by_card(r.redirect_url, "4111111111111111")
      assert.are.equal(301, res.status)
      local result = assert(z:complete(zs.query_of(res.headers.location), r.keep))
      assert.are.equal("paid", result.status)
      assert.are.equal(r.reference, result.reference)
      assert.are.equal("0.89", result.amount)
      assert.are.equal("EUR", result.currency)
      assert.are.equal(r.keep.uuid, result.provider_reference)
      local cb, reply = callback(z, tag .. "-cbok")
      assert.are.equal("paid", cb.status)
      assert.are.equal(r.reference, cb.reference)
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

    it("sends a new ext_transaction_id for every purchase of one reference", function()
      local z = zs.client()
      local _, product = zs.product(z)
      local p = zs.tx_fields(product, zs.id("twice"))
      p.reference, p.ext_transaction_id = "order-twice", nil
      local a, b = assert(z:purchase(p)), assert(z:purchase(p))
      assert.are_not.equal(a.keep.ext_transaction_id, b.keep.ext_transaction_id)
      -- as it is, when asked
      local plain = zs.client { reference_nonce = false }
      local c = assert(plain:purchase(p))
      assert.are.equal("order-twice", c.keep.ext_transaction_id)
      -- and a reference that leaves no room for the random part is refused
      p.reference = ("r"):rep(243)
      local _, err = z:purchase(p)
      assert.are.equal("reference", err.field)
      assert.are.equal("too_long", err.code)
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

    -- The reference server appends "?" .. notice even to a success_url with a query: the
    -- merchant's server receives the query "order=7?ext_transaction_id=...&sig=...".
    it("finds the notice after the merchant's own success_url query, as the reference server sends it", function()
      local z = zs.client()
      local tag = zs.id("qp")
      local r = start(z, tag, { success_url = sb.url() .. "/_sink/" .. tag .. "-ok?order=7" })
      local res = zs.request("POST", zs.base() .. "/_sandbox/pay", cjson.encode { token = r.keep.token })
      -- the browser follows the redirect: the query string as the shop's server sees it
      assert.are.equal(200, zs.request("GET", res.json.Location).status)
      local got = zs.sink_log(tag .. "-ok")
      local q = got[#got].query
      assert.are.equal(1, q:find("order=7?ext_transaction_id=", 1, true))
      local done = assert(z:complete(q, r.keep))
      assert.are.equal("paid", done.status)
      assert.are.equal(r.keep.ext_transaction_id, done.reference)
      -- the same with the shop's own parameter named like the notice's
      local tampered = "ext_transaction_id=other?" .. q:sub(#"order=7?" + 1)
      assert.are.equal("paid", assert(z:complete(tampered, r.keep)).status)
      -- and the bytes before the notice never join the signed part
      local _, err = z:complete(q:gsub("%?ext_transaction_id=", "&ext_transaction_id=X", 1), r.keep)
      assert.are.equal("signature", err.kind)
    end)

    it("finds the notice after several merchant parameters on the error_url", function()
      local z = zs.client()
      local tag = zs.id("qe")
      local r = start(z, tag, { error_url = sb.url() .. "/_sink/" .. tag .. "-err?a=1&b=2" })
      local res = zs.request("POST", zs.base() .. "/_sandbox/pay", cjson.encode { token = r.keep.token, outcome = "CC_ERROR" })
      local q = zs.query_of(res.json.Location)
      assert.are.equal(1, q:find("a=1&b=2?ext_transaction_id=", 1, true))
      local done = assert(z:complete(q, r.keep))
      assert.are.equal("failed", done.status)
      assert.are.equal("CC_ERROR", done.code)
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
      zs.client { consumer_secret = "wrong-secret", logger = function(_, line) lines[#lines + 1] = line end }:list_sellers()
      assert.is_true(#lines > 5)
      local text = table.concat(lines, "\n") .. sb.error_log()
      for _, secret in ipairs { sandbox.CONSUMER_SECRET, sandbox.NOTICE_KEYS[0], sandbox.NOTICE_KEYS[1],
                                "wrong-secret", "4111111111111111", "cvc=737" } do
        assert.is_nil(text:find(secret, 1, true), secret .. " reached a log line")
      end
      assert.truthy(text:find("zippy.create_transaction", 1, true)) -- the log is really there
    end)
  end)

  -- A stub Zippy (a real nginx) whose POST /transactions answers the transaction with one
  -- field changed (/price, /currency, /ext_transaction_id, /product_id) or as sent (/same).
  describe("an answer that is not the transaction asked for", function()
    local nginx = require "spec.support.nginx"
    local PORT = 18798
    local STUB = [[
      server {
        listen 127.0.0.1:${PORT};
        location ~ ^/(\w+)/transactions$ {
          content_by_lua_block {
            local cjson = require "cjson.safe"
            ngx.req.read_body()
            local t = cjson.decode(ngx.req.get_body_data() or "") or {}
            local change = ngx.var[1]
            local wrong = { price = "0.01", currency = "USD", ext_transaction_id = "someone-else",
                            product_id = "00000000-0000-4000-8000-000000000000" }
            if wrong[change] then t[change] = wrong[change] end
            t.uuid, t.status, t.token = "tx-1", "STARTED", ("ab"):rep(64)
            ngx.status = 201
            ngx.header["Content-Type"] = "application/json"
            ngx.print(cjson.encode(t))
          }
        }
      }
    ]]
    local srv
    setup(function() srv = nginx.start("zippy-stub", STUB, { PORT = PORT, WORKERS = 1 }) end)
    teardown(function() if srv then srv:stop() end end)

    local function buy(change)
      local z = zs.client { base_url = "http://127.0.0.1:" .. PORT .. "/" .. change }
      local p = zs.tx_fields(core.uuid4(), "stub")
      p.reference, p.ext_transaction_id = zs.id("stub"), nil
      return z:purchase(p)
    end

    it("redirects the buyer when the answer is the transaction sent", function()
      assert.are.equal("redirect", assert(buy("same")).status)
    end)

    it("never sends the buyer to a transaction of another price, currency, id or product", function()
      for _, change in ipairs { "price", "currency", "ext_transaction_id", "product_id" } do
        local r, err = buy(change)
        assert.is_nil(r, change)
        assert.are.equal("provider", err.kind)
        assert.are.equal("invalid_response", err.code)
        assert.truthy(err.message:find(change, 1, true), err.message)
      end
    end)
  end)
end)
