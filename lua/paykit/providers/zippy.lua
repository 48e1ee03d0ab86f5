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
-- (`paykit.providers.zippy_notice`), `fields` (`paykit.providers.zippy_fields`: the checks and
-- limits every value meets before it is sent), `CURRENCIES`, `PAY_METHODS` (CARD, OPERATOR),
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
--   -- send the browser to r.redirect_url; store r.keep and r.reference ("order-17~" .. 12 hex digits)
--   local result, err = zippy:complete(ngx.var.args, keep)        -- on success_url / error_url
--   local result, err, reply = zippy:notification{body = raw_body}  -- on the callback URLs
local core = require "paykit.core"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local url = require "paykit.url"
local money = require "paykit.money"
local oauth = require "paykit.providers.zippy_oauth"
local notice = require "paykit.providers.zippy_notice"
local check = require "paykit.providers.zippy_fields"

local _M = {}
_M.oauth = oauth
_M.notice = notice
_M.fields = check

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
--  * `reference_nonce` (default true): purchase sends `reference .. "~" .. 12 random hex
--   digits` as ext_transaction_id, so that every transaction's notice names it alone (see
--   @{Zippy:purchase}); false sends the reference as it is
--  * `reference_memory` (default 4096): how many references (ext_transaction_id) this instance
--   remembers with their amount and currency, to refuse a second transaction of one reference
--   at another price when the reference is sent as it is
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
  -- reference -> "price currency" of the transactions this instance started (see purchase)
  self.references = gateway.seen(opts.reference_memory or 4096)
  self.reference_nonce = opts.reference_nonce ~= false
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

local MAX_PROVIDER_TEXT = 500 -- of Zippy's error messages kept in an error

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
  if msg == nil and res.json == nil and type(res.body) == "string" and res.body:find("^[%w%p ]+$") then
    msg = res.body -- a plain-text answer, e.g. the reference server's 500 "Server Error"
  end
  if msg and #msg > MAX_PROVIDER_TEXT then msg = msg:sub(1, MAX_PROVIDER_TEXT) .. "..." end
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
    local texts = {}
    if type(fields) == "table" then
      for k, v in pairs(fields) do
        if type(k) == "string" then list[#list + 1] = k end
        fields[k] = require("paykit.redact").text(tostring(v))
      end
      table.sort(list)
      for _, k in ipairs(list) do texts[#texts + 1] = k .. ": " .. fields[k] end
    else
      -- The message is plain text ("external_id must be unique per seller", "Unrecognized
      -- fields: colour"): keep it, and name the field when the text starts with one.
      fields = {}
      if msg then
        local f = msg:match("^Unrecognized fields?: ([%w_]+)") or msg:match("^([%a_][%w_]*) must ")
        if f then list[1] = f; fields[f] = require("paykit.redact").text(msg) end
        texts[1] = msg
      end
    end
    base.kind, base.code, base.field = "validation", "invalid_argument", list[1]
    base.message = op .. ": Zippy refused " .. (#texts > 0 and table.concat(texts, "; ") or "the request")
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

-- A call on one resource, /collection/:uuid (the uuid checked with `rule`, then percent-encoded).
local function on_id(self, method, collection, uuid, rule, o)
  local e = rule(uuid, "uuid"); if e then return nil, e end
  return self:call(method, "/" .. collection .. "/" .. path_segment(uuid), o)
end

-- Copies only allowed fields; unknown ones are a validation error (Zippy rejects them).
local function pick(t, allowed, what)
  if type(t) ~= "table" then return nil, errors.validation(what, "invalid", what .. " must be a table") end
  local out = {}
  for k, v in pairs(t) do
    if not allowed[k] then
      local name = type(k) == "string" and k:sub(1, 64) or tostring(k)
      return nil, errors.validation(name, "unknown_field", "Zippy does not accept the field " .. name .. " on " .. what)
    end
    out[k] = v
  end
  return out
end

local SELLER_FIELDS = { uuid = true, status = true, name = true, email = true, agreement = true }

-- The seller's fields, each checked; `partial` lets the required ones be absent.
local function check_seller(s, partial)
  local rules = {
    { "uuid", check.key }, { "status" }, { "name", check.text }, { "email", check.email },
  }
  for _, r in ipairs(rules) do
    local k, rule = r[1], r[2]
    if not partial or s[k] ~= nil then
      if k == "status" then
        if not _M.SELLER_STATUSES[s.status] then
          return errors.validation("status", s.status == nil and "required" or "invalid",
            "status must be ACTIVE, INACTIVE or DISABLED")
        end
      else
        local e = rule(s[k], k); if e then return e end
      end
    end
  end
  if s.agreement ~= nil then return check.date(s.agreement, "agreement") end
end

--- Creates a seller (POST /sellers).
-- @tparam table s `uuid` (1-255 of A-Z a-z 0-9 - _ . ~ :), `status` (ACTIVE, INACTIVE,
--   DISABLED), `name`, `email` (required), `agreement` (YYYY-MM-DD); no other field
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
  return on_id(self, "GET", "sellers", uuid, check.key, { op = "get_seller" })
end

--- Every seller (GET /sellers).
-- @return the sellers
function _M:list_sellers()
  return self:call("GET", "/sellers", { op = "list_sellers" })
end

--- Changes some fields of a seller (GET, then PUT /sellers/:uuid with the whole seller).
-- Zippy's PUT is a full replacement (every field left out is blanked, and the uuid in the
-- body, not the path, names the seller that changes), so paykit reads the seller, merges
-- `changes` into it and sends all of it. A `uuid` in `changes` other than `uuid` is refused.
-- Two writers updating the same seller at once: the last one wins (Zippy has no versions).
-- @tparam string uuid
-- @tparam table changes some of the seller fields of @{Zippy:create_seller}
-- @return the seller as Zippy answers it
function _M:update_seller(uuid, changes)
  local e = check.key(uuid, "uuid"); if e then return nil, e end
  local body, err = pick(changes, SELLER_FIELDS, "seller")
  if not body then return nil, err end
  if next(body) == nil then return nil, errors.validation("seller", "empty", "update_seller needs a field to change") end
  if body.uuid ~= nil and body.uuid ~= uuid then
    return nil, errors.validation("uuid", "mismatch",
      "the uuid in changes differs from the seller being updated (Zippy would change that other seller)")
  end
  err = check_seller(body, true)
  if err then return nil, err end
  local current
  current, err = self:get_seller(uuid)
  if not current then return nil, err end
  if type(current) ~= "table" or (current.uuid ~= nil and current.uuid ~= uuid) then
    return nil, provider_error { code = "invalid_response", op = "zippy.update_seller",
      message = "zippy.update_seller: GET /sellers/:uuid did not answer that seller" }
  end
  local full = {}
  for k in pairs(SELLER_FIELDS) do
    local v = body[k]
    if v == nil and type(current[k]) == "string" and current[k] ~= "" then v = current[k] end
    full[k] = v
  end
  full.uuid = uuid
  err = check_seller(full)
  if err then
    err.message = err.message .. " (Zippy holds none for this seller: give it in changes)"
    return nil, err
  end
  return self:call("PUT", "/sellers/" .. path_segment(uuid), { body = full, op = "update_seller" })
end

--- Deletes a seller (DELETE /sellers/:uuid).
-- @tparam string uuid
-- @return the answer (true when empty)
function _M:delete_seller(uuid)
  return on_id(self, "DELETE", "sellers", uuid, check.key, { op = "delete_seller" })
end

--- A seller's terms (GET /terms/:seller_uuid).
-- @tparam string seller_uuid
-- @return the terms
function _M:get_terms(seller_uuid)
  return on_id(self, "GET", "terms", seller_uuid, check.key, { op = "get_terms" })
end

local PRODUCT_FIELDS = { uuid = true, name = true, external_id = true, seller_id = true }

--- Creates a product (POST /products).
-- @tparam table p `uuid` (a UUID string), `name`, `external_id`, `seller_id` (all required);
--   no other field
-- @return the product
function _M:create_product(p)
  local body, err = pick(p, PRODUCT_FIELDS, "product")
  if not body then return nil, err end
  local e = check.uuid(body.uuid, "uuid") or check.text(body.name, "name")
    or check.text(body.external_id, "external_id") or check.key(body.seller_id, "seller_id")
  if e then return nil, e end
  return self:call("POST", "/products", { body = body, op = "create_product", idempotent = true })
end

--- A product (GET /products/:uuid).
-- @tparam string uuid a UUID string
-- @return the product
function _M:get_product(uuid)
  return on_id(self, "GET", "products", uuid, check.uuid, { op = "get_product" })
end

--- Products, optionally filtered (GET /products).
-- list_products{seller_id=, external_id=} (both optional filters)
-- @tparam[opt] table filter `seller_id`, `external_id`
-- @return the products
function _M:list_products(filter)
  if filter == nil then filter = {} end
  local f, err = pick(filter, { seller_id = true, external_id = true }, "filter")
  if not f then return nil, err end
  local q = {}
  if f.seller_id ~= nil then
    local e = check.key(f.seller_id, "seller_id"); if e then return nil, e end
    q[#q + 1] = { "seller_id", f.seller_id }
  end
  if f.external_id ~= nil then
    local e = check.text(f.external_id, "external_id"); if e then return nil, e end
    q[#q + 1] = { "external_id", f.external_id }
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
-- the browser's way back: Zippy appends "?" .. notice, so a #fragment would swallow it
local RETURN_URLS = { success_url = true, error_url = true }

--- Checks and normalises a transaction; returns the JSON body or nil, err. No network.
-- Every value is checked as `paykit.providers.zippy_fields` says (text bounded and without
-- control characters, `product_id` a UUID, `price` above zero, ...).
-- @tparam table t `product_id` (a UUID string), `price` (decimal string, more than zero; sent
--   as "0.00"), `currency` (one of `CURRENCIES`), `pay_method` (CARD or OPERATOR), `carrier`,
--   `region` (the buyer's MCC, three digits), `ext_transaction_id` (1-255 bytes, no control
--   characters), `success_url`, `error_url`, `callback_success_url`, `callback_error_url`
--   (default: the instance's), `product_image_url`
-- @tparam[opt] table names the caller's names of the fields, for the errors (purchase's
--   `amount`, `reference`, `return_url`, `notify_url`)
-- @treturn table the request body
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M:transaction_body(t, names)
  names = names or {}
  local function name(k) return names[k] or k end
  local body, err = pick(t, TX_FIELDS, "transaction")
  if not body then return nil, err end
  for _, k in ipairs(TX_URLS) do
    if body[k] == nil then body[k] = self.defaults[k] end
  end
  local e = check.uuid(body.product_id, "product_id")
  if e then return nil, e end
  if type(body.currency) ~= "string" or not _M.CURRENCIES[body.currency] then
    return nil, errors.validation("currency", body.currency == nil and "required" or "unsupported_currency",
      "currency must be one of Zippy's: " .. CURRENCY_LIST)
  end
  if body.price_minor ~= nil then -- minor units, an integer: the same price as a decimal
    if body.price ~= nil then
      return nil, errors.validation(name("price"), "conflict",
        "give " .. name("price") .. " or " .. name("price_minor") .. ", not both")
    end
    local minor, dec = money.parse_minor(body.price_minor, body.currency, name("price_minor"), true)
    if not minor then return nil, dec end
    body.price, body.price_minor = dec, nil
  end
  body.price, err = check.price(body.price, body.currency, name("price"))
  if not body.price then return nil, err end
  if not _M.PAY_METHODS[body.pay_method] then
    return nil, errors.validation("pay_method", body.pay_method == nil and "required" or "invalid",
      "pay_method must be CARD or OPERATOR")
  end
  e = check.text(body.carrier, "carrier") or check.text(body.ext_transaction_id, name("ext_transaction_id"))
  if e then return nil, e end
  body.region, err = check.region(body.region, "region")
  if not body.region then return nil, err end
  for _, k in ipairs(TX_URLS) do
    e = check.url(body[k], name(k), { no_fragment = RETURN_URLS[k] })
    if e then return nil, e end
  end
  if body.product_image_url ~= nil then
    e = check.url(body.product_image_url, "product_image_url")
    if e then return nil, e end
  end
  return body
end

-- Zippy's notice names only ext_transaction_id, so two transactions of one reference at two
-- prices could not be told apart when one of them is paid: the instance refuses to start a
-- transaction for a reference it started at another price or currency. The claim is made
-- before the request (which yields), so concurrent purchases cannot both pass.
local function claim_reference(self, body, field)
  local price = body.price .. " " .. body.currency
  local before = self.references:get(body.ext_transaction_id)
  if before ~= nil and before ~= price then
    return errors.validation(field or "ext_transaction_id", "reused",
      (field or "ext_transaction_id") .. " was used for a transaction of " .. before .. " already: a new price needs a new "
      .. "reference (Zippy's notice names only the reference, not the price)")
  end
  self.references:add(body.ext_transaction_id, price)
end

-- POST /transactions with a checked body (from transaction_body).
-- Not idempotent: Zippy does not make ext_transaction_id unique, a repeat could start a second one.
-- `unique`: the ext_transaction_id carries purchase's random part, no claim is needed.
local function post_transaction(self, body, field, unique)
  if not unique then
    local err = claim_reference(self, body, field)
    if err then return nil, err end
  end
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
-- Zippy's reference server answers 409 for a notice without a sig and 500 for an unknown key
-- id, and checks a notice of key id 0 with its newest key (a genuine key-0 notice is FAIL
-- there): rely on @{Zippy:verify_notice}, which checks every configured key locally.
-- @tparam string signed the signed notice
-- @treturn boolean true when Zippy says OK; false, reason otherwise
-- @treturn ?string the reason for false
-- @return[2] nil
-- @return[2] err
function _M:check_notice(signed)
  if signed == nil then return nil, errors.validation("qs", "required", "the signed notice is required") end
  if type(signed) ~= "string" or signed == "" or #signed > check.MAX_NOTICE or signed:find("%c") then
    return nil, errors.validation("qs", "invalid", "the signed notice must be a string of 1-" .. check.MAX_NOTICE
      .. " bytes without control characters")
  end
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

local NONCE_SEP, NONCE_BYTES, NONCE_HEX = "~", 6, 12 -- 6 random bytes, 12 hex digits

--- Starts a payment (uniform flow): creates a transaction, answers its payment page.
-- purchase{product_id, amount|amount_minor|price, currency, pay_method, carrier, region, reference|ext_transaction_id,
--   success_url, error_url, callback_success_url, callback_error_url (or instance defaults),
--   product_image_url}
-- `return_url` stands for success_url and error_url, `notify_url` for both callback URLs.
--
-- Zippy's signed notice names only the transaction's ext_transaction_id, and Zippy signs the
-- notices of every shop with the same keys. So that a notice names one transaction alone, a
-- `reference` is sent as `reference .. "~" .. 12 random hex digits` (at most 242 bytes of
-- reference, then): the result's `reference` and `keep.ext_transaction_id` are that string
-- (store it: complete and notification answer it as `reference`), `keep.reference` is yours.
-- Without it (`reference_nonce = false`, or `ext_transaction_id` given as it is) the id must be
-- unique per transaction and across shops, and an instance refuses (validation `reused`) a
-- purchase whose id it already started at another amount or currency (the same amount again
-- is a retry and allowed; the memory is the instance's, `reference_memory` entries).
-- @tparam table p the fields above
-- @treturn table result "redirect" with `redirect_url` and `keep`
--   (`ext_transaction_id`, `uuid`, `token`, `amount`, `currency`)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function _M:purchase(p)
  if type(p) ~= "table" then return nil, errors.validation("purchase", "invalid", "purchase expects a table") end
  local t, names = {}, {}
  for k, v in pairs(p) do t[k] = v end
  -- the uniform names, each standing for Zippy's; giving both is ambiguous
  local function alias(uniform, zippy_names)
    if t[uniform] == nil then return nil end
    for _, z in ipairs(zippy_names) do
      if t[z] ~= nil then
        return errors.validation(uniform, "conflict", "give " .. uniform .. " or " .. z .. ", not both")
      end
    end
    for _, z in ipairs(zippy_names) do t[z], names[z] = t[uniform], uniform end
    t[uniform] = nil
  end
  if (t.amount ~= nil or t.amount_minor ~= nil) and (t.price ~= nil or t.price_minor ~= nil) then
    return nil, errors.validation("amount", "invalid", "give amount (or amount_minor) or price, not both")
  end
  local err = alias("amount", { "price" }) or alias("amount_minor", { "price_minor" })
    or alias("reference", { "ext_transaction_id" })
    -- return_url: the buyer's way back, for success and error alike; notify_url: the
    -- server-to-server callback, for both outcomes
    or alias("return_url", { "success_url", "error_url" })
    or alias("notify_url", { "callback_success_url", "callback_error_url" })
  if err then return nil, err end
  -- named as the uniform flow names them when the caller gave neither
  if t.price == nil then names.price = "amount" end
  if t.price_minor == nil then names.price_minor = "amount_minor" end
  if t.ext_transaction_id == nil then names.ext_transaction_id = "reference" end
  local unique = false
  if self.reference_nonce and names.ext_transaction_id == "reference" then
    err = check.text(t.ext_transaction_id, "reference", check.MAX_TEXT - #NONCE_SEP - NONCE_HEX)
    if err then return nil, err end
    t.ext_transaction_id = t.ext_transaction_id .. NONCE_SEP .. core.random_hex(NONCE_BYTES)
    unique = true
  end
  local body
  body, err = self:transaction_body(t, names)
  if not body then return nil, err end
  local tx
  tx, err = post_transaction(self, body, names.ext_transaction_id, unique)
  if not tx then return nil, err end
  if type(tx) ~= "table" or not nonempty_string(tx.token) then
    return nil, provider_error { code = "invalid_response", op = "zippy.create_transaction",
      message = "zippy.create_transaction: the answer carries no token" }
  end
  -- Zippy answers the transaction it created: the buyer is never sent to one that is not
  -- what was asked for (another price, currency, id or product). Text fields are compared
  -- (a JSON number cannot be compared exactly, and the reference server answers text).
  for _, k in ipairs { "price", "currency", "ext_transaction_id", "product_id" } do
    if type(tx[k]) == "string" and tx[k] ~= body[k] then
      return nil, provider_error { code = "invalid_response", op = "zippy.create_transaction",
        message = "zippy.create_transaction: the answer's " .. k .. " is not the one sent; the buyer is not sent to it" }
    end
  end
  return gateway.result {
    status = "redirect", method = "GET", provider = PROVIDER,
    redirect_url = self:payment_url(tx.token),
    reference = body.ext_transaction_id, provider_reference = tx.uuid,
    amount = body.price, currency = body.currency,
    raw = tx,
    keep = { ext_transaction_id = body.ext_transaction_id, uuid = tx.uuid, token = tx.token,
             amount = body.price, currency = body.currency, reference = p.reference },
  }
end

-- A signature error that names where the notice came from.
local function at(err, field)
  if err and err.field == nil then err.field = field end
  return err
end

--- Completes a payment when the buyer comes back (uniform flow).
-- complete(query, keep): the buyer's browser came back to success_url/error_url with the
-- signed notice in the query string. `query` is the RAW query string (or a table carrying it
-- as .query, like a notification request): verification needs the bytes as sent. The
-- merchant's own parameters may come first: Zippy sends the browser to
-- `success_url .. "?" .. notice` even when success_url has a query already, so both
-- `order=7&ext_transaction_id=...` and `order=7?ext_transaction_id=...` are found; only the
-- notice's own bytes are verified.
--
-- `keep` (what purchase answered as `keep`) is required: the notice names only its
-- ext_transaction_id, and a notice for another order than the buyer's is refused.
-- The amount and currency of the result are the kept ones (a notice carries none).
-- @tparam string|table params the raw query string, or a table with `query` (or `args`)
-- @tparam table keep the purchase's `keep` (its ext_transaction_id must match)
-- @treturn table result "paid" or "failed"
-- @return[2] nil
-- @return[2] a validation error (field `query`: `raw_query_required`, `too_long`; field `keep`)
--   or a signature error with field `query` (`wrong_transaction`, or those of
--   @{Zippy:verify_notice})
function _M:complete(params, keep)
  local raw = params
  if type(params) == "table" then raw = params.query or params.args end
  if type(raw) ~= "string" then
    return nil, errors.validation("query", "raw_query_required",
      "complete needs the raw query string of the return URL (decoded parameters cannot be verified)")
  end
  if type(keep) ~= "table" or not nonempty_string(keep.ext_transaction_id) then
    return nil, errors.validation("keep", keep == nil and "required" or "invalid",
      "complete needs the keep table that purchase answered for this buyer ({ext_transaction_id=, ...})")
  end
  if #raw > check.MAX_NOTICE then
    return nil, errors.validation("query", "too_long", "the return's query is longer than " .. check.MAX_NOTICE .. " bytes")
  end
  if raw:find("%c") then
    return nil, at(errors.signature("malformed", "the return's query holds control characters"), "query")
  end
  local n, err = self:verify_notice(notice.from_query(raw))
  if not n then return nil, at(err, "query") end
  if keep.ext_transaction_id ~= n.ext_transaction_id then
    return nil, at(errors.signature("wrong_transaction",
      "the signed notice is for another transaction than the one kept for this buyer"), "query")
  end
  return notice_result(n, keep)
end

--- Handles Zippy's callback (uniform flow).
-- notification{method=, query=, body=, headers=}: Zippy's callback POST
-- (signed_notice=URLENCODED_NOTICE). -> result, reply | nil, err, reply
-- A callback names only the notice's ext_transaction_id: the result's `reference` is it
-- (match it to your order); `duplicate` is true for a notice already seen by this instance.
-- @tparam table req the raw `body` (or `query`)
-- @treturn table result "paid" or "failed", `duplicate` true when seen before (else false)
-- @treturn table reply 200 "OK"
-- @return[2] nil
-- @return[2] a validation error (field `req`) or a signature error (field `body` or
--   `signed_notice`)
-- @return[2] table reply 400
function _M:notification(req)
  if type(req) ~= "table" then
    return nil, errors.validation("req", "invalid", "notification expects {method=, query=, body=, headers=}"),
      gateway.reply(400, "BAD REQUEST")
  end
  local raw, err
  if type(req.body) == "string" and #req.body > check.MAX_CALLBACK then
    err = at(errors.signature("malformed", "the Zippy callback body is longer than " .. check.MAX_CALLBACK .. " bytes"), "body")
  elseif type(req.body) == "string" and req.body ~= "" then
    raw, err = notice.from_body(req.body)
    err = at(err, "signed_notice")
  elseif type(req.query) == "string" and req.query ~= "" and #req.query <= check.MAX_CALLBACK then
    raw = notice.from_query(req.query)
  else
    err = at(errors.signature("unsigned", "the Zippy callback carries no signed notice"), "body")
  end
  local n
  if raw then
    if raw:find("%c") then
      err = at(errors.signature("malformed", "the Zippy notice holds control characters"), "signed_notice")
    else
      n, err = self:verify_notice(raw)
      err = at(err, "signed_notice")
    end
  end
  if not n then
    self.log("warn", "paykit zippy notification rejected: " .. tostring(err))
    return nil, err, gateway.reply(400, "REJECTED")
  end
  local result = notice_result(n)
  -- verify does not yield, so nothing runs between the check and the record: one claim per key
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
