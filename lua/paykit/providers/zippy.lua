--- paykit.providers.zippy: hosted card and carrier-billing payment pages.
-- Zippy: hosted card and carrier-billing payment pages. The merchant's server creates
-- sellers, products and transactions over a REST API signed with OAuth 1.0 (two-legged,
-- HMAC-SHA1); the buyer pays on Zippy's pages; Zippy reports the outcome with a signed notice
-- (browser redirect to success_url/error_url, and a callback POST).
--
-- Zippy has no call to look a transaction up (the reference API only creates them), so
-- status() answers an "unsupported" error: the outcome arrives only as a signed notice.
--
-- Module fields: `oauth` (`paykit.providers.zippy_oauth`), `notice`
-- (`paykit.providers.zippy_notice`), `CURRENCIES`, `PAY_METHODS` (CARD, OPERATOR),
-- `SELLER_STATUSES` (ACTIVE, INACTIVE, DISABLED).
--
-- API calls answer Zippy's decoded JSON (true for an empty answer) or nil, err: a 401 is a
-- config error `invalid_credentials`; 404 `not_found`, 400 `bad_request`, 409 `conflict`,
-- 5xx `server_error` are provider errors; a 409 InvalidArgumentError is a validation error
-- `invalid_argument` whose `fields` maps each refused field to Zippy's reason.
-- @module paykit.providers.zippy
-- @usage
--   local zippy = paykit.zippy{consumer_key = "...", consumer_secret = "...",
--     notice_keys = {[0] = "old secret", [1] = "new secret"}, base_url = "https://zippy.example/"}
--   local r = zippy:purchase{product_id = uuid, amount = "0.99", currency = "EUR", pay_method = "CARD",
--     carrier = "TMOBILE", region = 300, reference = "order-17", success_url = ..., error_url = ...,
--     callback_success_url = ..., callback_error_url = ...}
--   -- send the browser to r.redirect_url; store r.keep
--   local result, err = zippy:complete(ngx.var.args, keep)        -- on success_url / error_url
--   local result, err, reply = zippy:notification{body = raw_body}  -- on the callback URLs
local core = require "paykit.core"
local errors = require "paykit.errors"
local money = require "paykit.money"
local gateway = require "paykit.gateway"
local url = require "paykit.url"
local oauth = require "paykit.providers.zippy_oauth"
local notice = require "paykit.providers.zippy_notice"

local _M = {}
_M.oauth = oauth
_M.notice = notice

local mt = { __index = _M }

local CURRENCY_LIST = "AUD CAD CHF COP DKK EGP EUR GBP HUF IDR MXN MYR NOK NZD PHP PLN QAR SEK SGD THB USD ZAR"
_M.CURRENCIES = {}
for c in CURRENCY_LIST:gmatch("%u+") do
  _M.CURRENCIES[c] = true
end
_M.PAY_METHODS = { CARD = true, OPERATOR = true }
_M.SELLER_STATUSES = { ACTIVE = true, INACTIVE = true, DISABLED = true }

local PROVIDER = "zippy"

-- ------------------------------------------------------------------------- construction

local function config_error(field, message)
  error(errors.config(field, "invalid", message), 0)
end

local is_http_url = url.is_http

local function nonempty_string(v) return type(v) == "string" and v ~= "" end

-- Normalises notice_keys ({[id] = secret}, ids numeric or numeric strings) -> map, newest id.
local function notice_keys(keys)
  if keys == nil then return {}, nil end
  if type(keys) ~= "table" then config_error("notice_keys", "notice_keys must be a table {[id] = secret}") end
  local out, newest = {}, nil
  for k, v in pairs(keys) do
    local id = tonumber(k)
    if not id or id < 0 or id ~= math.floor(id) then
      config_error("notice_keys", "notice key ids must be non-negative integers")
    end
    if not nonempty_string(v) then config_error("notice_keys", "notice key " .. id .. " must be a non-empty string") end
    id = math.floor(id)
    out[id] = v
    if not newest or id > newest then newest = id end
  end
  return out, newest
end

--- A Zippy instance.
-- paykit.zippy{consumer_key=, consumer_secret=, base_url=, notice_keys=, token=, realm=,
--   success_url=, error_url=, callback_success_url=, callback_error_url= (defaults for purchase),
--   clock= (function -> unix seconds), nonce= (function -> string), and the transport options
--   (timeout, connect_timeout, logger, hooks, retry, ...) of paykit.http}
-- The secrets (consumer_secret, token_secret, notice keys) live only in the instance's closures.
-- @tparam table opts
--
--  * `consumer_key`, `consumer_secret` (required), `base_url` (required, absolute http(s))
--  * `notice_keys` `{[id] = secret, ...}` the keys notices may be signed with (rotation: every
--   listed key is accepted; the newest id signs test notices)
--  * `token` (default "notimplemented"), `token_secret`, `realm` (default "Zippy")
--  * `success_url`, `error_url`, `callback_success_url`, `callback_error_url`: purchase defaults
--  * `clock`, `nonce`, and the transport options
-- @treturn Zippy the instance
-- @raise a config error (a `paykit.errors` table) naming the option
function _M.new(opts)
  if type(opts) ~= "table" then config_error("opts", "paykit.zippy expects a table of options") end
  if not nonempty_string(opts.consumer_key) then config_error("consumer_key", "consumer_key is required") end
  if not nonempty_string(opts.consumer_secret) then config_error("consumer_secret", "consumer_secret is required") end
  if not is_http_url(opts.base_url) then config_error("base_url", "base_url must be an absolute http(s) URL") end
  local token = opts.token == nil and "notimplemented" or opts.token
  if not nonempty_string(token) then config_error("token", "token must be a non-empty string") end
  local self = gateway.base(PROVIDER, opts)
  self.consumer_key = opts.consumer_key
  self.token = token
  self.realm = opts.realm == nil and "Zippy" or opts.realm
  self.base_url = opts.base_url:gsub("/+$", "")
  self.clock = opts.clock or os.time
  self.make_nonce = opts.nonce or function() return core.random_hex(16) end
  self.defaults = {}
  for _, k in ipairs { "success_url", "error_url", "callback_success_url", "callback_error_url" } do
    if opts[k] ~= nil and not is_http_url(opts[k]) then config_error(k, k .. " must be an absolute http(s) URL") end
    self.defaults[k] = opts[k]
  end
  -- Secrets live in a closure-held table, out of reach of anyone printing the instance.
  local secret = opts.consumer_secret
  local keys, newest = notice_keys(opts.notice_keys)
  self.sign = function(method, url)
    return oauth.authorization {
      method = method, url = url, consumer_key = self.consumer_key, consumer_secret = secret,
      token = self.token, token_secret = opts.token_secret, realm = self.realm,
      nonce = self.make_nonce(), timestamp = math.floor(self.clock()),
    }
  end
  self.verify_raw = function(raw) return notice.verify(raw, keys) end
  self.sign_notice = function(fields, key_id)
    key_id = key_id or newest
    if key_id == nil or not keys[key_id] then
      return nil, errors.config("notice_keys", "unknown_key", "no notice key with id " .. tostring(key_id))
    end
    return notice.sign(fields, key_id, keys[key_id])
  end
  return setmetatable(self, mt)
end

-- ------------------------------------------------------------------------- API calls

local function provider_error(t)
  t.provider = PROVIDER
  return errors.provider(t)
end

-- Zippy's answer -> decoded JSON or nil, err.
local function interpret(res, op)
  local status = res.status
  if status >= 200 and status < 300 then
    if status == 204 or res.body == nil or res.body == "" then return true end
    if res.json == nil then
      return nil, provider_error { code = "invalid_response", status = status, op = op,
        message = op .. ": Zippy answered " .. status .. " with a body that is not JSON" }
    end
    return res.json
  end
  local e = type(res.json) == "table" and type(res.json.error) == "table" and res.json.error or {}
  local name = type(e.name) == "string" and e.name or nil
  local msg = type(e.message) == "string" and e.message or nil
  local base = { status = status, op = op, provider = PROVIDER, provider_code = name, provider_message = msg }
  local function make(kind, code, text)
    base.kind, base.code, base.message = kind, code, op .. ": " .. text .. (msg and (" (" .. msg .. ")") or "")
    return errors.new(base)
  end
  if status == 401 then
    return nil, make("config", "invalid_credentials", "Zippy refused the OAuth credentials (consumer key/secret, clock)")
  elseif status == 404 then
    return nil, make("provider", "not_found", "Zippy has no such resource")
  elseif status == 400 then
    return nil, make("provider", "bad_request", "Zippy refused the request")
  elseif status == 409 and name == "InvalidArgumentError" then
    local fields = msg and require("paykit.http").cjson().decode(msg)
    local list = {}
    if type(fields) == "table" then
      for k, v in pairs(fields) do
        if type(k) == "string" then list[#list + 1] = k end
        fields[k] = require("paykit.redact").text(tostring(v))
      end
      table.sort(list)
    else
      fields = {}
    end
    base.kind, base.code, base.field = "validation", "invalid_argument", list[1]
    local texts = {}
    for _, k in ipairs(list) do texts[#texts + 1] = k .. ": " .. fields[k] end
    base.message = op .. ": Zippy refused " .. (#list > 0 and table.concat(texts, "; ") or "the request")
    local err = errors.new(base)
    err.fields = fields
    return nil, err
  elseif status == 409 then
    return nil, make("provider", "conflict", "Zippy reports a conflict with an existing resource")
  elseif status >= 500 then
    return nil, make("provider", "server_error", "Zippy answered HTTP " .. status)
  end
  return nil, make("provider", "unexpected_status", "Zippy answered HTTP " .. status)
end

local function path_segment(v)
  return core.pct_encode(tostring(v))
end

--- A signed notice and callback body, for merchants' own tests (module function).
-- zippy.generate_test_notice{ext_transaction_id=, error=, key_id=, key=}
-- @function generate_test_notice
-- @tparam table t `key` (the notice secret, required), `key_id` (default 0),
--   `ext_transaction_id` (default "test"), `error` (a failure code; absent: paid)
-- @treturn string the signed notice
-- @treturn string the callback body `signed_notice=...` carrying it
-- @raise when t is not a table with a non-empty key

--- A Zippy instance (from @{new}); the methods below return `nil, err` on failure.
-- @type Zippy

--- One OAuth-signed API call (the building block of the other methods).
-- call(method, path, {query=pairs, body=table, idempotent=bool, op=}) -> json | nil, err
-- @tparam string method "GET", "POST", "PUT" or "DELETE"
-- @tparam string path e.g. "/sellers"
-- @tparam[opt] table o `query` (pairs), `body` (a table, sent as JSON), `idempotent`
--   (default: every method but POST), `op` (name for logs and errors)
-- @return the decoded JSON answer, or true for an empty answer
-- @return[2] nil
-- @return[2] a transport, config, provider or validation error (see the module description)
function _M:call(method, path, o)
  o = o or {}
  local url = self.base_url .. path
  if o.query and #o.query > 0 then url = url .. "?" .. core.canonical_query(o.query) end
  local auth, aerr = self.sign(method, url)
  if not auth then return nil, errors.config("base_url", "invalid", aerr) end
  local op = "zippy." .. (o.op or method:lower())
  local body = o.body
  if body ~= nil then
    local text, jerr = require("paykit.http").cjson().encode(body)
    if not text then return nil, errors.validation("body", "invalid", "cannot encode the request as JSON: " .. tostring(jerr)) end
    body = text
  end
  local res, err = self.http:request {
    method = method, url = url, body = body, json = true, op = op,
    headers = { Authorization = auth },
    idempotent = o.idempotent ~= nil and o.idempotent or (method ~= "POST"),
  }
  if not res then return nil, err end
  return interpret(res, op)
end

local function need_id(v, field)
  if not nonempty_string(v) then
    return errors.validation(field, "required", field .. " must be a non-empty string")
  end
end

-- A call on one resource, /collection/:uuid (the uuid checked, then percent-encoded).
local function on_id(self, method, collection, uuid, o)
  local e = need_id(uuid, "uuid"); if e then return nil, e end
  return self:call(method, "/" .. collection .. "/" .. path_segment(uuid), o)
end

-- Copies only allowed fields; unknown ones are a validation error (Zippy rejects them).
local function pick(t, allowed, what)
  if type(t) ~= "table" then return nil, errors.validation(what, "invalid", what .. " must be a table") end
  local out = {}
  for k, v in pairs(t) do
    if not allowed[k] then
      return nil, errors.validation(tostring(k), "unknown_field", "Zippy does not accept the field " .. tostring(k) .. " on " .. what)
    end
    out[k] = v
  end
  return out
end

local SELLER_FIELDS = { uuid = true, status = true, name = true, email = true, agreement = true }

local function check_seller(s, partial)
  for _, k in ipairs { "uuid", "status", "name", "email" } do
    if not partial or s[k] ~= nil then
      local e = need_id(s[k], k); if e then return e end
    end
  end
  if s.status ~= nil and not _M.SELLER_STATUSES[s.status] then
    return errors.validation("status", "invalid", "status must be ACTIVE, INACTIVE or DISABLED")
  end
  if s.email ~= nil and not tostring(s.email):match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then
    return errors.validation("email", "invalid", "email must be an email address")
  end
  if s.agreement ~= nil and not tostring(s.agreement):match("^%d%d%d%d%-%d%d%-%d%d$") then
    return errors.validation("agreement", "invalid", "agreement must be a date YYYY-MM-DD")
  end
end

--- Creates a seller (POST /sellers).
-- @tparam table s `uuid`, `status` (ACTIVE, INACTIVE, DISABLED), `name`, `email` (required),
--   `agreement` (YYYY-MM-DD); no other field
-- @return the seller as Zippy answers it
function _M:create_seller(s)
  local body, err = pick(s, SELLER_FIELDS, "seller")
  if not body then return nil, err end
  err = check_seller(body)
  if err then return nil, err end
  return self:call("POST", "/sellers", { body = body, op = "create_seller", idempotent = true })
end

--- A seller (GET /sellers/:uuid).
-- @tparam string uuid
-- @return the seller
function _M:get_seller(uuid)
  return on_id(self, "GET", "sellers", uuid, { op = "get_seller" })
end

--- Every seller (GET /sellers).
-- @return the sellers
function _M:list_sellers()
  return self:call("GET", "/sellers", { op = "list_sellers" })
end

--- Changes a seller (PUT /sellers/:uuid).
-- @tparam string uuid
-- @tparam table changes any of the seller fields of @{Zippy:create_seller}
-- @return the answer
function _M:update_seller(uuid, changes)
  local e = need_id(uuid, "uuid"); if e then return nil, e end
  local body, err = pick(changes, SELLER_FIELDS, "seller")
  if not body then return nil, err end
  err = check_seller(body, true)
  if err then return nil, err end
  return self:call("PUT", "/sellers/" .. path_segment(uuid), { body = body, op = "update_seller" })
end

--- Deletes a seller (DELETE /sellers/:uuid).
-- @tparam string uuid
-- @return the answer (true when empty)
function _M:delete_seller(uuid)
  return on_id(self, "DELETE", "sellers", uuid, { op = "delete_seller" })
end

--- A seller's terms (GET /terms/:seller_uuid).
-- @tparam string seller_uuid
-- @return the terms
function _M:get_terms(seller_uuid)
  return on_id(self, "GET", "terms", seller_uuid, { op = "get_terms" })
end

local PRODUCT_FIELDS = { uuid = true, name = true, external_id = true, seller_id = true }

--- Creates a product (POST /products).
-- @tparam table p `uuid`, `name`, `external_id`, `seller_id` (all required); no other field
-- @return the product
function _M:create_product(p)
  local body, err = pick(p, PRODUCT_FIELDS, "product")
  if not body then return nil, err end
  for _, k in ipairs { "uuid", "name", "external_id", "seller_id" } do
    local e = need_id(body[k], k); if e then return nil, e end
  end
  return self:call("POST", "/products", { body = body, op = "create_product", idempotent = true })
end

--- A product (GET /products/:uuid).
-- @tparam string uuid
-- @return the product
function _M:get_product(uuid)
  return on_id(self, "GET", "products", uuid, { op = "get_product" })
end

--- Products, optionally filtered (GET /products).
-- list_products{seller_id=, external_id=} (both optional filters)
-- @tparam[opt] table filter `seller_id`, `external_id`
-- @return the products
function _M:list_products(filter)
  filter = filter or {}
  local q = {}
  for _, k in ipairs { "seller_id", "external_id" } do
    if filter[k] ~= nil then
      local e = need_id(filter[k], k); if e then return nil, e end
      q[#q + 1] = { k, filter[k] }
    end
  end
  return self:call("GET", "/products", { query = q, op = "list_products" })
end

-- ------------------------------------------------------------------------- transactions

local TX_FIELDS = {
  product_id = true, region = true, carrier = true, price = true, price_minor = true, currency = true, pay_method = true,
  success_url = true, error_url = true, callback_success_url = true, callback_error_url = true,
  ext_transaction_id = true, product_image_url = true,
}
local TX_URLS = { "success_url", "error_url", "callback_success_url", "callback_error_url" }

-- The price as Zippy wants it: "0.00", from t.price (a decimal string) or t.price_minor (an integer).
local function zippy_price(t, currency)
  if money.exponent(currency) ~= 2 then
    return nil, errors.validation("currency", "unsupported_currency", "Zippy prices " .. tostring(currency) .. " with 2 decimals; paykit.money does not know it")
  end
  local minor, dec = money.read(t, "price", currency)
  if not minor then return nil, dec end
  if not dec:match("^[0-9]+%.[0-9][0-9]$") then
    return nil, errors.validation("price", "invalid", "price must be a decimal like 0.99")
  end
  return dec
end

--- Checks and normalises a transaction; returns the JSON body or nil, err. No network.
-- @tparam table t `product_id`, `price` (a decimal string; or `price_minor`, integer minor
--   units; sent as "0.00"), `currency` (one of `CURRENCIES`), `pay_method` (CARD or OPERATOR), `carrier`,
--   `region` (the buyer's MCC, numeric), `ext_transaction_id`, `success_url`, `error_url`,
--   `callback_success_url`, `callback_error_url` (default: the instance's), `product_image_url`
-- @treturn table the request body
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M:transaction_body(t)
  local body, err = pick(t, TX_FIELDS, "transaction")
  if not body then return nil, err end
  for _, k in ipairs(TX_URLS) do
    if body[k] == nil then body[k] = self.defaults[k] end
  end
  if type(body.currency) ~= "string" or not _M.CURRENCIES[body.currency] then
    return nil, errors.validation("currency", body.currency == nil and "required" or "unsupported_currency",
      "currency must be one of Zippy's: " .. CURRENCY_LIST)
  end
  local price
  price, err = zippy_price(body, body.currency)
  if not price then return nil, err end
  body.price, body.price_minor = price, nil
  if not _M.PAY_METHODS[body.pay_method] then
    return nil, errors.validation("pay_method", body.pay_method == nil and "required" or "invalid",
      "pay_method must be CARD or OPERATOR")
  end
  for _, k in ipairs { "product_id", "carrier", "ext_transaction_id" } do
    local v = body[k]
    if type(v) == "number" and k == "product_id" then v = tostring(v) end
    local e = need_id(v, k); if e then return nil, e end
  end
  if body.region == nil then return nil, errors.validation("region", "required", "region (the buyer's MCC) is required") end
  if not tostring(body.region):match("^%d+$") or (type(body.region) ~= "number" and type(body.region) ~= "string") then
    return nil, errors.validation("region", "invalid", "region must be a numeric mobile country code")
  end
  for _, k in ipairs(TX_URLS) do
    if body[k] == nil then return nil, errors.validation(k, "required", k .. " is required") end
    if not is_http_url(body[k]) then return nil, errors.validation(k, "invalid_url", k .. " must be an absolute http(s) URL") end
  end
  if body.product_image_url ~= nil and not is_http_url(body.product_image_url) then
    return nil, errors.validation("product_image_url", "invalid_url", "product_image_url must be an absolute http(s) URL")
  end
  return body
end

-- POST /transactions with a checked body (from transaction_body).
-- Not idempotent: Zippy does not make ext_transaction_id unique, a repeat could start a second one.
local function post_transaction(self, body)
  return self:call("POST", "/transactions", { body = body, op = "create_transaction", idempotent = false })
end

--- Creates a transaction (POST /transactions); never retried once it may have been sent.
-- create_transaction{...every documented field...} -> transaction (with uuid, status, token)
-- @tparam table t the fields of @{Zippy:transaction_body}
-- @return the transaction (with uuid, status, token)
function _M:create_transaction(t)
  local body, err = self:transaction_body(t)
  if not body then return nil, err end
  return post_transaction(self, body)
end

--- The payment page URL for a transaction's token.
-- @tparam string token the transaction's token
-- @treturn string base_url .. "/payment/start?tx=" .. token (percent-encoded)
function _M:payment_url(token)
  return self.base_url .. "/payment/start?tx=" .. core.pct_encode(tostring(token))
end

--- Asks Zippy to check a signed notice (POST /notices). -> true | false, reason | nil, err
-- @tparam string signed the signed notice
-- @treturn boolean true when Zippy says OK; false, reason otherwise
-- @treturn ?string the reason for false
-- @return[2] nil
-- @return[2] err
function _M:check_notice(signed)
  if not nonempty_string(signed) then return nil, errors.validation("qs", "required", "the signed notice is required") end
  local res, err = self:call("POST", "/notices", { body = { qs = signed }, op = "check_notice", idempotent = true })
  if not res then return nil, err end
  if type(res) ~= "table" then
    return nil, provider_error { code = "invalid_response", message = "zippy.check_notice: unexpected answer" }
  end
  if res.result == "OK" then return true end
  return false, tostring(res.reason or "")
end

--- Whether Zippy's API answers.
-- GET /status -> true | nil, err
-- @treturn boolean true when the answer is `{result = "OK"}`
-- @return[2] nil
-- @return[2] err
function _M:ping()
  local res, err = self:call("GET", "/status", { op = "status" })
  if not res then return nil, err end
  return type(res) == "table" and res.result == "OK"
end

-- ------------------------------------------------------------------------- notices

--- Verifies a signed notice with the instance's notice keys.
-- verify_notice(raw) -> {ext_transaction_id=, error=} | nil, err (kind signature)
-- @tparam string raw the signed notice, as received
-- @treturn table `{ext_transaction_id=, error=, key_id=}`
-- @return[2] nil
-- @return[2] a signature error (see `paykit.providers.zippy_notice.verify`)
function _M:verify_notice(raw)
  local map, list_or_err, key_id = self.verify_raw(raw)
  if not map then return nil, list_or_err end
  return { ext_transaction_id = map.ext_transaction_id, error = map.error, key_id = key_id }
end

-- The fields of a test notice: ext_transaction_id (default "test"), then error when given.
local function test_fields(t)
  local fields = { { "ext_transaction_id", t.ext_transaction_id or "test" } }
  if t.error then fields[2] = { "error", t.error } end
  return fields
end

--- A signed notice for the merchant's own tests (uses this instance's newest notice key, or key_id).
-- @tparam[opt] table t `ext_transaction_id` (default "test"), `error`, `key_id`
-- @treturn string the signed notice
-- @return[2] nil
-- @return[2] a config error `unknown_key`
function _M:test_notice(t)
  t = t or {}
  return self.sign_notice(test_fields(t), t.key_id)
end

-- Module-level helper: zippy.generate_test_notice{ext_transaction_id=, error=, key_id=, key=}
-- -> signed notice, and the callback body (signed_notice=...) carrying it.
function _M.generate_test_notice(t)
  if type(t) ~= "table" or not nonempty_string(t.key) then
    error("generate_test_notice needs {key = secret, key_id = n, ext_transaction_id = ..., error = ...}", 2)
  end
  local signed = notice.sign(test_fields(t), t.key_id or 0, t.key)
  return signed, "signed_notice=" .. core.pct_encode(signed)
end

local function notice_result(n, keep)
  keep = keep or {}
  local failed = n.error ~= nil
  return gateway.result {
    status = failed and "failed" or "paid",
    provider = PROVIDER,
    reference = n.ext_transaction_id,
    provider_reference = keep.uuid,
    amount = keep.amount, currency = keep.currency,
    code = n.error,
    message = failed and ("Zippy reports the payment failed: " .. n.error) or "paid",
    raw = { ext_transaction_id = n.ext_transaction_id, error = n.error },
  }
end

-- ------------------------------------------------------------------------- uniform flow

--- Starts a payment (uniform flow): creates a transaction, answers its payment page.
-- purchase{product_id, amount|amount_minor|price, currency, pay_method, carrier, region, reference|ext_transaction_id,
--   success_url, error_url, callback_success_url, callback_error_url (or instance defaults),
--   product_image_url}
-- `return_url` stands for success_url and error_url, `notify_url` for both callback URLs.
-- @tparam table p the fields above
-- @treturn table result "redirect" with `redirect_url` and `keep`
--   (`ext_transaction_id`, `uuid`, `token`, `amount`, `currency`)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function _M:purchase(p)
  if type(p) ~= "table" then return nil, errors.validation("purchase", "invalid", "purchase expects a table") end
  local t = {}
  for k, v in pairs(p) do t[k] = v end
  if t.amount ~= nil or t.amount_minor ~= nil then
    if t.price ~= nil or t.price_minor ~= nil then return nil, errors.validation("amount", "invalid", "give amount or price, not both") end
    local minor, dec = money.read(t, "amount", t.currency)
    if not minor and dec.field ~= "currency" then return nil, dec end
    t.price, t.amount, t.amount_minor = minor and dec or t.amount, nil, nil -- a bad currency: refused below
  end
  -- the uniform names: return_url (the buyer's way back, for success and error alike) and
  -- notify_url (the server-to-server callback, for both outcomes)
  if t.return_url ~= nil then
    t.success_url = t.success_url or t.return_url
    t.error_url = t.error_url or t.return_url
    t.return_url = nil
  end
  if t.notify_url ~= nil then
    t.callback_success_url = t.callback_success_url or t.notify_url
    t.callback_error_url = t.callback_error_url or t.notify_url
    t.notify_url = nil
  end
  if t.reference ~= nil then
    if t.ext_transaction_id ~= nil then return nil, errors.validation("reference", "invalid", "give reference or ext_transaction_id, not both") end
    t.ext_transaction_id, t.reference = t.reference, nil
  end
  local body, err = self:transaction_body(t)
  if not body then return nil, err end
  local tx
  tx, err = post_transaction(self, body)
  if not tx then return nil, err end
  if type(tx) ~= "table" or not nonempty_string(tx.token) then
    return nil, provider_error { code = "invalid_response", op = "zippy.create_transaction",
      message = "zippy.create_transaction: the answer carries no token" }
  end
  return gateway.result {
    status = "redirect", method = "GET", provider = PROVIDER,
    redirect_url = self:payment_url(tx.token),
    reference = body.ext_transaction_id, provider_reference = tx.uuid,
    amount = body.price, currency = body.currency,
    raw = tx,
    keep = { ext_transaction_id = body.ext_transaction_id, uuid = tx.uuid, token = tx.token,
             amount = body.price, currency = body.currency },
  }
end

--- Completes a payment when the buyer comes back (uniform flow).
-- complete(query, keep): the buyer's browser came back to success_url/error_url with the
-- signed notice in the query string. `query` is the RAW query string (or a table carrying it
-- as .query, like a notification request): verification needs the bytes as sent.
-- @tparam string|table params the raw query string, or a table with `query` (or `args`)
-- @tparam[opt] table keep the purchase's `keep` (its ext_transaction_id must match)
-- @treturn table result "paid" or "failed"
-- @return[2] nil
-- @return[2] a validation error (`raw_query_required`) or a signature error
--   (`wrong_transaction`, or those of @{Zippy:verify_notice})
function _M:complete(params, keep)
  local raw = params
  if type(params) == "table" then raw = params.query or params.args end
  if type(raw) ~= "string" then
    return nil, errors.validation("params", "raw_query_required",
      "complete needs the raw query string of the return URL (decoded parameters cannot be verified)")
  end
  local n, err = self:verify_notice(notice.from_query(raw))
  if not n then return nil, err end
  if keep and keep.ext_transaction_id ~= nil and keep.ext_transaction_id ~= n.ext_transaction_id then
    return nil, errors.signature("wrong_transaction",
      "the signed notice is for another transaction than the one kept for this buyer")
  end
  return notice_result(n, keep)
end

--- Handles Zippy's callback (uniform flow).
-- notification{method=, query=, body=, headers=}: Zippy's callback POST
-- (signed_notice=URLENCODED_NOTICE). -> result, reply | nil, err, reply
-- @tparam table req the raw `body` (or `query`)
-- @treturn table result "paid" or "failed", `duplicate` true when seen before (else false)
-- @treturn table reply 200 "OK"
-- @return[2] nil
-- @return[2] a validation or signature error
-- @return[2] table reply 400
function _M:notification(req)
  if type(req) ~= "table" then
    return nil, errors.validation("req", "invalid", "notification expects {method=, query=, body=, headers=}"),
      gateway.reply(400, "BAD REQUEST")
  end
  local raw, err
  if type(req.body) == "string" and req.body ~= "" then
    raw, err = notice.from_body(req.body)
  elseif type(req.query) == "string" and req.query ~= "" then
    raw = notice.from_query(req.query)
  else
    err = errors.signature("unsigned", "the Zippy callback carries no signed notice")
  end
  local n
  if raw then n, err = self:verify_notice(raw) end
  if not n then
    self.log("warn", "paykit zippy notification rejected: " .. tostring(err))
    return nil, err, gateway.reply(400, "REJECTED")
  end
  local result = notice_result(n)
  result.duplicate = self.seen:add(n.ext_transaction_id .. "\0" .. (n.error or ""))
  return result, gateway.reply(200, "OK")
end

--- Always a provider error `unsupported` (uniform flow).
-- Zippy offers no lookup of a transaction: the reference API has POST /transactions only.
-- @param ref the reference (only named in the message)
-- @return nil
-- @return a provider error `unsupported`
function _M:status(ref)
  return nil, errors.new { kind = "provider", code = "unsupported", provider = PROVIDER, op = "zippy.status",
    message = "Zippy has no transaction lookup (GET /transactions/:uuid is not part of its API); "
      .. "the outcome of " .. tostring(ref) .. " arrives only as a signed notice (complete / notification)" }
end

return _M
