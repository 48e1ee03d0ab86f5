-- The Zippy simulator over real HTTP: OAuth checks, resources and their rules, error shapes,
-- the payment pages, the magic endpoints.
local core = require "paykit.core"
local cjson = require "cjson.safe"
local sb = require "spec.support.sandbox"
local zs = require "spec.support.zippy"
local oauth = require "paykit.providers.zippy_oauth"
local sandbox = zs.sandbox

local base

-- A signed raw request (the client's signing, but every piece under the test's control).
local function signed(method, path, body, o)
  o = o or {}
  local url = base .. path
  local header = oauth.authorization {
    method = method, url = o.sign_url or url, consumer_key = o.key or sandbox.CONSUMER_KEY,
    consumer_secret = o.secret or sandbox.CONSUMER_SECRET, token = o.token or "notimplemented",
    nonce = core.random_hex(8), timestamp = o.timestamp or os.time(), realm = "Zippy",
  }
  if o.mangle then header = o.mangle(header) end
  return zs.request(method, url, body and cjson.encode(body) or nil,
    { Authorization = header, ["Content-Type"] = "application/json" })
end

local function error_of(res)
  assert.is_table(res.json)
  return res.json.error
end

local function new_seller(over)
  local s = { uuid = zs.id("seller"), status = "ACTIVE", name = "Shop", email = "shop@example.org" }
  for k, v in pairs(over or {}) do s[k] = v end
  local res = signed("POST", "/sellers", s)
  assert.are.equal(201, res.status)
  return s.uuid
end

local function new_product(seller, over)
  local p = { uuid = zs.id("product"), name = "Thing", external_id = zs.id("ext"), seller_id = seller }
  for k, v in pairs(over or {}) do p[k] = v end
  return signed("POST", "/products", p), p
end

local function tx_body(product, over)
  return zs.tx_fields(product, "sbx", over)
end

local function new_tx(over)
  local seller = new_seller()
  local res, p = new_product(seller)
  assert.are.equal(201, res.status)
  local t = tx_body(p.uuid, over)
  local created = signed("POST", "/transactions", t)
  assert.are.equal(201, created.status)
  return created.json, t
end

describe("zippy sandbox", function()
  lazy_setup(function() base = sb.start() .. "/zippy" end)
  lazy_teardown(function() sb.stop() end)

  describe("pure helpers", function()
    it("builds the zippy-notes base string and signature", function()
      local b = sandbox.base_string("GET", "http://127.0.0.1:2605/sellers", {
        { "oauth_consumer_key", "dpf43f3p2l4k3l03" }, { "oauth_nonce", "abc" },
        { "oauth_signature_method", "HMAC-SHA1" }, { "oauth_timestamp", "1700000000" },
        { "oauth_token", "notimplemented" }, { "oauth_version", "1.0" } })
      assert.are.equal("467mnp5J8iEZ/5XGoc2Qz1jqA6s=", sandbox.oauth_signature(b, "kd94hf93k423kf44"))
    end)

    it("signs the zippy-notes notice vector", function()
      local s = sandbox.sign_notice({ { "ext_transaction_id", "webpay xyz/2&a=b" }, { "error", "CC_ERROR" } }, 0)
      assert.are.equal("ext_transaction_id=webpay%20xyz%2F2%26a%3Db&error=CC_ERROR&sig=0:"
        .. "2b1b112b8acdb4c4a3ee79fb19a918cc1002862e0f49b7af3458a5d6c4b00e7a", s)
    end)
  end)

  describe("OAuth", function()
    it("accepts a properly signed request", function()
      assert.are.equal(200, signed("GET", "/sellers").status)
    end)

    local function rejected(res)
      assert.are.equal(401, res.status)
      local e = error_of(res)
      assert.are.equal("InvalidCredentialsError", e.name)
      assert.are.equal(401, e.code)
      assert.are.equal(401, e.status)
    end

    it("rejects a request without an Authorization header", function()
      rejected(zs.request("GET", base .. "/sellers"))
    end)

    it("rejects a wrong secret and an unknown consumer key", function()
      rejected(signed("GET", "/sellers", nil, { secret = "wrong" }))
      rejected(signed("GET", "/sellers", nil, { key = "other-key" }))
    end)

    it("rejects a tampered signature", function()
      rejected(signed("GET", "/sellers", nil, { mangle = function(h)
        return (h:gsub('oauth_signature="(.)', function(c) return 'oauth_signature="' .. (c == "A" and "B" or "A") end))
      end }))
    end)

    it("rejects a request whose path or query differ from what was signed", function()
      rejected(signed("GET", "/sellers", nil, { sign_url = base .. "/products" }))
      rejected(signed("GET", "/products?seller_id=a", nil, { sign_url = base .. "/products?seller_id=b" }))
      rejected(signed("GET", "/sellers", nil, { sign_url = "http://127.0.0.1:" .. sb.port() .. "/sellers" }))
    end)

    it("covers query parameters in the signature", function()
      local seller = new_seller { uuid = "a b " .. core.random_hex(4) }
      assert.are.equal(200, signed("GET", "/products?seller_id=" .. core.pct_encode(seller) .. "&external_id=x").status)
    end)

    it("rejects an old timestamp, an empty token and another version", function()
      rejected(signed("GET", "/sellers", nil, { timestamp = os.time() - 3600 }))
      rejected(signed("GET", "/sellers", nil, { token = "" }))
      rejected(signed("GET", "/sellers", nil, { mangle = function(h) return (h:gsub('oauth_version="1.0"', 'oauth_version="2.0"')) end }))
      rejected(signed("GET", "/sellers", nil, { mangle = function(h) return (h:gsub("HMAC%-SHA1", "PLAINTEXT")) end }))
    end)

    it("needs no OAuth for GET /status", function()
      local res = zs.request("GET", base .. "/status")
      assert.are.equal(200, res.status)
      assert.are.same({ result = "OK" }, res.json)
    end)
  end)

  describe("sellers", function()
    it("creates, reads, lists, updates and deletes a seller", function()
      local uuid = new_seller { agreement = "2024-01-31" }
      local got = signed("GET", "/sellers/" .. uuid)
      assert.are.equal(200, got.status)
      assert.are.equal("Shop", got.json.name)
      assert.are.equal(uuid, got.json.resource_pk)
      assert.are.equal("sellers", got.json.resource_name)
      assert.are.equal("/sellers/" .. uuid, got.json.resource_uri)
      local found = false
      for _, s in ipairs(signed("GET", "/sellers").json) do found = found or s.uuid == uuid end
      assert.is_true(found)
      local put = signed("PUT", "/sellers/" .. uuid, { uuid = uuid, status = "INACTIVE", name = "Shop", email = "shop@example.org" })
      assert.are.equal(200, put.status)
      assert.are.equal("INACTIVE", put.json.status)
      assert.are.equal(204, signed("DELETE", "/sellers/" .. uuid).status)
      assert.are.equal(404, signed("GET", "/sellers/" .. uuid).status)
    end)

    it("answers 404 ResourceNotFoundError for an unknown seller, and 204 to its DELETE (as the reference server)", function()
      for _, m in ipairs { "GET", "PUT" } do
        local res = signed(m, "/sellers/nobody", m == "PUT" and { uuid = "nobody", name = "x" } or nil)
        assert.are.equal(404, res.status)
        assert.are.equal("ResourceNotFoundError", error_of(res).name)
      end
      assert.are.equal(204, signed("DELETE", "/sellers/nobody").status)
    end)

    it("refuses a second seller with the same uuid (409 InvalidArgumentError, as the reference server)", function()
      local uuid = new_seller()
      local res = signed("POST", "/sellers", { uuid = uuid, status = "ACTIVE", name = "B", email = "b@example.org" })
      assert.are.equal(409, res.status)
      assert.are.equal("InvalidArgumentError", error_of(res).name)
      assert.are.same({ uuid = "UUID must be unique" }, cjson.decode(error_of(res).message))
    end)

    describe("PUT is a full replacement, as on the reference server", function()
      it("answers a plain-text 500 Server Error without a uuid in the body", function()
        local uuid = new_seller()
        local res = signed("PUT", "/sellers/" .. uuid, { name = "Renamed" })
        assert.are.equal(500, res.status)
        assert.are.equal("Server Error", res.body)
        assert.are.equal("Shop", signed("GET", "/sellers/" .. uuid).json.name)
      end)

      it("stores every field left out as an empty string, and then refuses products for the seller", function()
        local uuid = new_seller { agreement = "2024-01-31" }
        local res = signed("PUT", "/sellers/" .. uuid, { uuid = uuid, name = "Renamed" })
        assert.are.equal(200, res.status)
        local got = signed("GET", "/sellers/" .. uuid).json
        assert.are.equal("Renamed", got.name)
        assert.are.equal("", got.status)
        assert.are.equal("", got.email)
        assert.are.equal("", got.agreement)
        local p = new_product(uuid)
        assert.are.equal(409, p.status)
        assert.truthy(cjson.decode(error_of(p).message).seller_id)
      end)

      it("changes the seller named in the body, not the one in the path", function()
        local a, b = new_seller { name = "A" }, new_seller { name = "B" }
        local res = signed("PUT", "/sellers/" .. a, { uuid = b, status = "ACTIVE", name = "B2", email = "b@example.org" })
        assert.are.equal(200, res.status)
        assert.are.equal("A", signed("GET", "/sellers/" .. a).json.name)
        assert.are.equal("B2", signed("GET", "/sellers/" .. b).json.name)
      end)

      it("refuses unknown fields with a plain-text message", function()
        local uuid = new_seller()
        local res = signed("PUT", "/sellers/" .. uuid, { uuid = uuid, status = "ACTIVE", name = "x", email = "x@example.org", colour = "red" })
        assert.are.equal(409, res.status)
        assert.are.equal("InvalidArgumentError", error_of(res).name)
        assert.are.equal("Unrecognized fields: colour", error_of(res).message)
      end)
    end)

    it("answers 400 BadRequestError when the body is not a JSON object", function()
      for _, res in ipairs { signed("POST", "/sellers", { 1, 2 }), signed("POST", "/products", { "x" }),
                             signed("POST", "/transactions", { 1 }), signed("POST", "/notices", { "qs" }),
                             zs.request("POST", base .. "/_sandbox/pay", "not json") } do
        assert.are.equal(400, res.status)
        assert.are.equal("BadRequestError", error_of(res).name)
      end
    end)

    it("answers 409 InvalidArgumentError with a field -> message JSON string", function()
      local res = signed("POST", "/sellers", { uuid = zs.id(), status = "OPEN", email = "x" })
      assert.are.equal(409, res.status)
      local e = error_of(res)
      assert.are.equal("InvalidArgumentError", e.name)
      local fields = cjson.decode(e.message)
      assert.are.equal("This field is required.", fields.name)
      assert.truthy(fields.status)
      assert.truthy(fields.email)
    end)

    it("answers unknown fields with a plain-text InvalidArgumentError message", function()
      local res = signed("POST", "/sellers", { uuid = zs.id(), status = "ACTIVE", name = "n", email = "x@example.org", colour = "red" })
      assert.are.equal(409, res.status)
      assert.are.equal("InvalidArgumentError", error_of(res).name)
      assert.are.equal("Unrecognized fields: colour", error_of(res).message)
    end)

    it("gives the terms of a seller", function()
      local uuid = new_seller { agreement = "2024-02-01" }
      local res = signed("GET", "/terms/" .. uuid)
      assert.are.equal(200, res.status)
      assert.is_string(res.json.text)
      assert.are.equal("2024-02-01", res.json.agreement)
      assert.are.equal(404, signed("GET", "/terms/nobody").status)
    end)
  end)

  describe("products", function()
    it("creates an ACTIVE product and finds it by seller and external id", function()
      local seller = new_seller()
      local res, p = new_product(seller)
      assert.are.equal(201, res.status)
      assert.are.equal("ACTIVE", res.json.status)
      assert.are.equal(200, signed("GET", "/products/" .. p.uuid).status)
      local list = signed("GET", "/products?seller_id=" .. seller .. "&external_id=" .. p.external_id).json
      assert.are.equal(1, #list)
      assert.are.equal(p.uuid, list[1].uuid)
      assert.are.same({}, signed("GET", "/products?seller_id=" .. seller .. "&external_id=none").json)
    end)

    it("answers 404 NotFoundError for the products of an unknown seller (as the reference server)", function()
      local res = signed("GET", "/products?seller_id=nobody")
      assert.are.equal(404, res.status)
      assert.are.equal("NotFoundError", error_of(res).name)
    end)

    it("keeps external_id unique per seller only", function()
      local s1, s2 = new_seller(), new_seller()
      assert.are.equal(201, (new_product(s1, { external_id = "same" })).status)
      local again = new_product(s1, { external_id = "same" })
      assert.are.equal(409, again.status)
      assert.are.equal("InvalidArgumentError", error_of(again).name)
      assert.are.equal("external_id must be unique per seller", error_of(again).message)
      assert.are.equal(201, (new_product(s2, { external_id = "same" })).status)
    end)

    it("wants an existing ACTIVE seller", function()
      local inactive = new_seller { status = "INACTIVE" }
      for _, seller in ipairs { inactive, "nobody" } do
        local res = new_product(seller)
        assert.are.equal(409, res.status)
        assert.truthy(cjson.decode(error_of(res).message).seller_id)
      end
    end)

    it("refuses a duplicate product uuid", function()
      local seller = new_seller()
      local _, p = new_product(seller)
      local res = new_product(seller, { uuid = p.uuid })
      assert.are.equal(409, res.status)
      assert.are.equal("ConflictError", error_of(res).name)
    end)
  end)

  describe("transactions", function()
    it("creates a STARTED transaction with a 128-hex-digit token", function()
      local tx, t = new_tx()
      assert.are.equal("STARTED", tx.status)
      assert.truthy(tx.token:match("^" .. ("%x"):rep(128) .. "$"))
      assert.are.equal(t.price, tx.price)
      assert.are.equal(t.ext_transaction_id, tx.ext_transaction_id)
      assert.are.equal("transactions", tx.resource_name)
      assert.is_string(tx.uuid)
    end)

    local function invalid_field(over, field)
      local seller = new_seller()
      local _, p = new_product(seller)
      local t = tx_body(p.uuid, over)
      local res = signed("POST", "/transactions", t)
      assert.are.equal(409, res.status)
      local e = error_of(res)
      assert.are.equal("InvalidArgumentError", e.name)
      local fields = cjson.decode(e.message)
      assert.is_string(fields[field])
      return fields[field]
    end

    it("applies the reference server's rules field by field", function()
      assert.are.equal("This field must be in the format of 0.00.", invalid_field({ price = "0.9" }, "price"))
      invalid_field({ price = 0.89 }, "price")
      invalid_field({ currency = "JPY" }, "currency")
      invalid_field({ pay_method = "CASH" }, "pay_method")
      invalid_field({ success_url = "/relative" }, "success_url")
      invalid_field({ callback_error_url = "ftp://x/y" }, "callback_error_url")
      invalid_field({ region = "abc" }, "region")
      invalid_field({ product_id = "nope" }, "product_id")
      assert.are.equal("This field is required.", invalid_field({ carrier = cjson.null }, "carrier"))
    end)

    it("stores the region as a string", function()
      local tx = new_tx { region = 310 }
      assert.are.equal("310", tx.region)
    end)

    it("accepts the resource_* fields of the documented example", function()
      local seller = new_seller()
      local _, p = new_product(seller)
      local t = tx_body(p.uuid, { resource_pk = "1", resource_name = "transactions", resource_uri = "/transactions/1" })
      assert.are.equal(201, signed("POST", "/transactions", t).status)
    end)

    it("answers HTTP 500 on demand", function()
      local seller = new_seller()
      local _, p = new_product(seller)
      local res = signed("POST", "/transactions", tx_body(p.uuid, { ext_transaction_id = "sandbox-fail-500" }))
      assert.are.equal(500, res.status)
    end)
  end)

  describe("notices", function()
    it("verifies a signed notice with POST /notices", function()
      local good = sandbox.sign_notice({ { "ext_transaction_id", "o-1" } }, 1)
      assert.are.same({ result = "OK", reason = "" }, signed("POST", "/notices", { qs = good }).json)
      local bad = good:gsub("o%-1", "o-2")
      assert.are.same({ result = "FAIL", reason = "signature mismatch" }, signed("POST", "/notices", { qs = bad }).json)
    end)

    it("answers as the reference server: 409 without a sig, a plain 500 for an unknown key id", function()
      local res = signed("POST", "/notices", { qs = "ext_transaction_id=o-1" })
      assert.are.equal(409, res.status)
      assert.are.equal("InvalidArgumentError", error_of(res).name)
      res = signed("POST", "/notices", { qs = "ext_transaction_id=o-1&sig=7:" .. ("a"):rep(64) })
      assert.are.equal(500, res.status)
      assert.are.equal("Server Error", res.body)
    end)

    it("checks a notice of key id 0 with the newest key, as the reference server does", function()
      local old = sandbox.sign_notice({ { "ext_transaction_id", "o-1" } }, 0)
      assert.is_true(sandbox.verify_notice(old)) -- a genuine notice of key 0
      assert.are.same({ result = "FAIL", reason = "signature mismatch" }, signed("POST", "/notices", { qs = old }).json)
    end)
  end)

  describe("payment pages", function()
    it("shows the card form with stable ids, and 400 when started twice", function()
      local tx = new_tx()
      local page = zs.request("GET", base .. "/payment/start?tx=" .. tx.token)
      assert.are.equal(200, page.status)
      for _, id in ipairs { "card-number", "card-expiry", "card-cvc", "pay" } do
        assert.truthy(page.body:find('id="' .. id .. '"', 1, true), id)
      end
      local again = zs.request("GET", base .. "/payment/start?tx=" .. tx.token)
      assert.are.equal(400, again.status)
      assert.are.equal("BadRequestError", error_of(again).name)
    end)

    it("answers 404 for an unknown token", function()
      assert.are.equal(404, zs.request("GET", base .. "/payment/start?tx=" .. ("ab"):rep(64)).status)
      assert.are.equal(404, zs.request("GET", base .. "/payment/start").status)
    end)

    -- Pays a new transaction by card: 301 to `back` with a notice the sandbox's key verifies,
    -- and the same notice POSTed to the callback sink `sink`. Returns the notice.
    local function card_outcome(number, back, sink)
      assert.are.equal(204, zs.request("DELETE", sb.url() .. "/_sink/" .. sink .. "/log").status)
      local tx, t = new_tx()
      local res = zs.pay_by_card(base .. "/payment/start?tx=" .. tx.token, number)
      assert.are.equal(301, res.status)
      local loc = res.headers.location
      assert.are.equal(1, loc:find(t[back] .. "?ext_transaction_id=" .. core.pct_encode(t.ext_transaction_id), 1, true))
      local q = zs.query_of(loc)
      assert.is_true(sandbox.verify_notice(q))
      local cb = zs.sink_log(sink)
      local last = cb[#cb]
      assert.are.equal("POST", last.method)
      assert.are.equal("application/x-www-form-urlencoded", last.headers["content-type"])
      assert.are.equal(q, core.form_decode(last.body).signed_notice)
      return q
    end

    it("approves a test card: 301 to success_url with a signed notice, callback POSTed", function()
      local q = card_outcome("4111111111111111", "success_url", "sbx-cbok")
      assert.is_nil(q:find("error=", 1, true))
    end)

    it("declines 4000000000000002 with CC_ERROR: 301 to error_url, callback to callback_error_url", function()
      local q = card_outcome("4000000000000002", "error_url", "sbx-cberr")
      assert.truthy(q:find("&error=CC_ERROR&sig=1:", 1, true))
    end)

    it("shows the form again for a card failing Luhn, a past expiry or a bad CVC", function()
      for _, case in ipairs { { "4111111111111112", "12/39", "123" }, { "4111111111111111", "01/20", "123" },
                              { "4111111111111111", "12/39", "12a" } } do
        local tx = new_tx()
        local res = zs.pay_by_card(base .. "/payment/start?tx=" .. tx.token, case[1], case[2], case[3])
        assert.are.equal(200, res.status)
        assert.truthy(res.body:find('id="error"', 1, true))
        assert.is_nil(res.body:find('value="' .. case[1], 1, true)) -- the number is not echoed back
      end
    end)

    it("bills the operator after the phone number and the right PIN", function()
      local tx, t = new_tx { pay_method = "OPERATOR" }
      local url = base .. "/payment/start?tx=" .. tx.token
      local page = zs.request("GET", url)
      assert.truthy(page.body:find('id="phone"', 1, true))
      local pin_page = zs.form_post(base .. "/payment/phone", { tx = tx.token, phone = "+49 1512 3456789", action = "send" })
      assert.are.equal(200, pin_page.status)
      assert.truthy(pin_page.body:find('id="pin"', 1, true))
      assert.truthy(pin_page.body:find('id="confirm"', 1, true))
      local res = zs.form_post(base .. "/payment/pin", { tx = tx.token, pin = sandbox.APPROVE_PIN, action = "confirm" })
      assert.are.equal(301, res.status)
      assert.are.equal(1, res.headers.location:find(t.success_url, 1, true))
    end)

    it("fails carrier billing with DIR_BILL_ERROR on a wrong PIN or a refused number", function()
      local tx, t = new_tx { pay_method = "OPERATOR" }
      local res = zs.pay_by_phone(base .. "/payment/start?tx=" .. tx.token, "15551234567", "9999")
      assert.are.equal(301, res.status)
      assert.are.equal(1, res.headers.location:find(t.error_url, 1, true))
      assert.truthy(res.headers.location:find("error=DIR_BILL_ERROR", 1, true))
      tx = new_tx { pay_method = "OPERATOR" }
      res = zs.pay_by_phone(base .. "/payment/start?tx=" .. tx.token, sandbox.REFUSED_PHONE)
      assert.are.equal(301, res.status)
      assert.truthy(res.headers.location:find("error=DIR_BILL_ERROR", 1, true))
    end)

    it("refuses a step that does not belong to the transaction's method", function()
      local tx = new_tx()
      zs.request("GET", base .. "/payment/start?tx=" .. tx.token)
      assert.are.equal(400, zs.form_post(base .. "/payment/pin", { tx = tx.token, pin = "1234" }).status)
    end)
  end)

  describe("the return as the reference server builds it", function()
    it("appends ? and the notice to success_url even when it has a query already", function()
      local tx, t = new_tx { success_url = sb.url() .. "/_sink/sbx-q?shop_order=77" }
      local res = zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = tx.token })
      assert.are.equal(t.success_url .. "?" .. res.json.signed_notice, res.json.Location)
      assert.truthy(res.json.Location:find("/_sink/sbx-q?shop_order=77?ext_transaction_id=", 1, true))
    end)

    it("appends ? and the notice to error_url as well", function()
      local tx, t = new_tx { error_url = sb.url() .. "/_sink/sbx-q?a=1&b=2" }
      local res = zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = tx.token, outcome = "CC_ERROR" })
      assert.are.equal(t.error_url .. "?" .. res.json.signed_notice, res.json.Location)
    end)
  end)

  describe("magic endpoints", function()
    it("finishes a transaction with POST /_sandbox/pay and refuses a second time", function()
      local tx, t = new_tx()
      local res = zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = tx.token, outcome = "CC_ERROR" })
      assert.are.equal(200, res.status)
      assert.are.equal(1, res.json.Location:find(t.error_url .. "?", 1, true))
      assert.truthy(res.json.signed_notice:find("error=CC_ERROR", 1, true))
      local again = zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = tx.token, outcome = "success" })
      assert.are.equal(400, again.status)
      assert.are.equal(404, zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = "x" }).status)
    end)

    it("signs with another notice key when told to", function()
      finally(function() zs.request("POST", base .. "/_sandbox/keys", cjson.encode { sign_with = 1 }) end)
      assert.are.equal(200, zs.request("POST", base .. "/_sandbox/keys", cjson.encode { sign_with = 0 }).status)
      local tx = new_tx()
      local res = zs.request("POST", base .. "/_sandbox/pay", cjson.encode { token = tx.token })
      assert.truthy(res.json.signed_notice:find("&sig=0:", 1, true))
      assert.are.equal(409, zs.request("POST", base .. "/_sandbox/keys", cjson.encode { sign_with = 5 }).status)
    end)
  end)
end)
