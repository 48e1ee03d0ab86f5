--- paykit.providers.zippy: hosted card and carrier-billing payment pages.
-- The merchant's server creates sellers, products and transactions over a REST API signed
-- with OAuth 1.0 (two-legged, HMAC-SHA1); the buyer pays on Zippy's pages; Zippy reports the
-- outcome with a signed notice (browser redirect to success_url/error_url, and a callback POST).
--
-- Built on the provider kit (`paykit.kit`): this file is the flow (the declaration, purchase,
-- complete, notices); `paykit.providers.zippy_request` builds and checks what is sent (the
-- CRUD calls are its table of operations), `paykit.providers.zippy_wire` signs and reads.
--
-- Zippy has no call to look a transaction up (the reference API only creates them), so
-- status() answers an "unsupported" error: the outcome arrives only as a signed notice.
--
-- Module fields: `oauth` (`paykit.providers.zippy_oauth`), `notice`
-- (`paykit.providers.zippy_notice`), `fields` (`paykit.providers.zippy_fields`), `request`
-- (`paykit.providers.zippy_request`), `CURRENCIES`, `PAY_METHODS` (CARD, OPERATOR),
-- `SELLER_STATUSES` (ACTIVE, INACTIVE, DISABLED).
--
-- API calls answer Zippy's decoded JSON (true for an empty answer) or nil, err, with the
-- kit's HTTP vocabulary (README, "Errors"): a 401 is a config error `invalid_credentials`;
-- 404 `not_found`, 400 `bad_request`, 409 `conflict`, 5xx `server_error` are provider
-- errors; a 409 InvalidArgumentError is a validation error `invalid_argument` whose `fields`
-- maps each refused field to Zippy's reason.
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
local kit = require "paykit.kit"
local oauth = require "paykit.providers.zippy_oauth"
local notice = require "paykit.providers.zippy_notice"
local check = require "paykit.providers.zippy_fields"
local checks = require "paykit.kit.checks"
local request = require "paykit.providers.zippy_request"
local wire = require "paykit.providers.zippy_wire"

local PROVIDER = "zippy"
local URL_DEFAULTS = { "success_url", "error_url", "callback_success_url", "callback_error_url" }

local OPTIONS = {
  consumer_key = { type = "string", required = true },
  consumer_secret = { type = "string", required = true, secret = true },
  base_url = { type = "url", required = true },
  notice_keys = { type = "keys", required = true },
  token = { type = "string", default = "notimplemented" },
  token_secret = { type = "string", secret = true },
  realm = { type = "string", default = "Zippy" },
  reference_nonce = { type = "boolean", default = true },
  reference_memory = { type = "integer", default = 4096 },
  clock = { type = "function" },
  nonce = { type = "function" },
}
for _, k in ipairs(URL_DEFAULTS) do OPTIONS[k] = { type = "url" } end

local at, notice_result = notice.at, notice.result

local P = kit.provider {
  name = PROVIDER, title = "Zippy", options = OPTIONS, wire = wire,
  operations = request.OPERATIONS, notice = notice.pipeline(check),
  init = function(self, o)
    -- Secrets live in closures, out of reach of anyone printing the instance.
    local secret, token_secret = o.consumer_secret, o.token_secret
    local keys, newest = o.notice_keys.keys, o.notice_keys.newest
    self.clock = o.clock or os.time
    self.make_nonce = o.nonce or function() return core.random_hex(16) end
    -- no clock or nonce hook: the signer (C) takes the time and the random nonce itself
    local hooked = o.clock ~= nil or o.nonce ~= nil
    -- reference -> "price currency" of the transactions this instance started (see purchase)
    self.references = gateway.seen(o.reference_memory)
    self.good_urls = { [0] = 0 } -- URLs the transaction checks passed (request.remember_urls)
    self.defaults = {}
    for _, k in ipairs(URL_DEFAULTS) do self.defaults[k] = o[k] end
    -- the OAuth parts fixed per instance (signing key, encoded consumer key, header text) made once
    local signer = oauth.signer { consumer_key = self.consumer_key, consumer_secret = secret,
      token = self.token, token_secret = token_secret, realm = self.realm }
    local floor = math.floor
    self.sign = function(method, url)
      if not hooked then return signer(method, url) end
      return signer(method, url, self.make_nonce(), floor(self.clock()))
    end
    self.verify_raw = function(raw) return notice.verify(raw, keys) end
    self.sign_notice = function(fields, key_id)
      key_id = key_id or newest
      if key_id == nil or not keys[key_id] then
        return nil, errors.config("notice_keys", "unknown_key", "no notice key with id " .. tostring(key_id))
      end
      return notice.sign(fields, key_id, keys[key_id])
    end
    return self
  end,
}

local _M = P
_M.oauth, _M.notice, _M.fields, _M.request = oauth, notice, check, request
_M.CURRENCIES, _M.PAY_METHODS, _M.SELLER_STATUSES = request.CURRENCIES, request.PAY_METHODS, request.SELLER_STATUSES

--- A Zippy instance: `paykit.zippy{...}`.
-- The secrets (consumer_secret, token_secret, notice keys) live only in the instance's closures.
-- @function new
-- @tparam table opts
--
--  * `consumer_key`, `consumer_secret` (required), `base_url` (required, absolute http(s))
--  * `notice_keys` `{[id] = secret, ...}` (required) the keys notices may be signed with
--   (rotation: every listed key is accepted; the newest id signs test notices)
--  * `token` (default "notimplemented"), `token_secret`, `realm` (default "Zippy")
--  * `success_url`, `error_url`, `callback_success_url`, `callback_error_url`: purchase defaults
--  * `reference_nonce` (default true): purchase sends `reference .. "~" .. 12 random hex
--   digits` as ext_transaction_id (see @{Zippy:purchase}); false sends the reference as it is
--  * `reference_memory` (default 4096): how many references this instance remembers with
--   their amount and currency, to refuse a second transaction of one reference at another price
--  * `clock`, `nonce` (functions, for tests), `store` (notifications already handled:
--   `paykit.kit.notify`), and the transport options of `paykit.http.new`
-- @treturn Zippy the instance
-- @return[2] nil
-- @return[2] a config error naming the option (an unknown one: "did you mean ...")

--- A signed notice and callback body, for merchants' own tests (module function).
-- zippy.generate_test_notice{ext_transaction_id=, error=, key_id=, key=}
-- @tparam table t `key` (the notice secret, required), `key_id` (default 0),
--   `ext_transaction_id` (default "test"), `error` (a failure code; absent: paid)
-- @treturn string the signed notice
-- @treturn string the callback body `signed_notice=...` carrying it
-- @raise when t is not a table with a non-empty key
function _M.generate_test_notice(t)
  if type(t) ~= "table" or type(t.key) ~= "string" or t.key == "" then
    error("generate_test_notice needs {key = secret, key_id = n, ext_transaction_id = ..., error = ...}", 2)
  end
  local fields = { { "ext_transaction_id", t.ext_transaction_id or "test" } }
  if t.error then fields[2] = { "error", t.error } end
  local signed = notice.sign(fields, t.key_id or 0, t.key)
  return signed, "signed_notice=" .. core.pct_encode(signed)
end

--- A Zippy instance (from @{new}); the methods below return `nil, err` on failure. Called
-- with a dot (`zippy.purchase{}`), a method raises saying to use a colon.
-- @type Zippy
local Zippy = P.methods

-- The fields of call's options table.
local CALL_FIELDS = { query = true, body = true, idempotent = true, op = true }

--- One OAuth-signed API call (the building block of the other methods).
-- @tparam string method "GET", "POST", "PUT" or "DELETE"
-- @tparam string path e.g. "/sellers"
-- @tparam[opt] table o `query` (pairs), `body` (a table, sent as JSON), `idempotent`
--   (default: every method but POST), `op` (name for logs and errors)
-- @return the decoded JSON answer, or true for an empty answer
-- @return[2] nil
-- @return[2] a transport, config, provider or validation error (see the module description)
function Zippy:call(method, path, o)
  if o == nil then o = {} end
  local _, err = kit.fields(o, CALL_FIELDS, "call")
  if err then return nil, err end
  local answer, info = self:commit(o.op or method:lower(), { method = method, path = path, query = o.query,
    body = o.body, idempotent = o.idempotent })
  if answer == nil then return nil, info end
  return answer
end

--- One request through the kit's commit (`paykit.kit.wire.commit`): what @{Zippy:call} uses.
-- @function Zippy:commit
-- @tparam string op the operation's name
-- @tparam table req `{method=, path=, query=, body=, idempotent=}`
-- @return the answer and the kit's info, or nil, err

--- Creates a seller (POST /sellers; an operation of `paykit.providers.zippy_request`).
-- @function Zippy:create_seller
-- @tparam table s `uuid` (1-255 letters, digits and - _ . ~ :), `status` (ACTIVE, INACTIVE,
--   DISABLED), `name`, `email` (required), `agreement` (YYYY-MM-DD); no other field
-- @return the seller as Zippy answers it

--- A seller (GET /sellers/:uuid).
-- @function Zippy:get_seller
-- @tparam string uuid
-- @return the seller

--- Every seller (GET /sellers).
-- @function Zippy:list_sellers
-- @return the sellers

--- Deletes a seller (DELETE /sellers/:uuid).
-- @function Zippy:delete_seller
-- @tparam string uuid
-- @return the answer (true when empty)

--- A seller's terms (GET /terms/:seller_uuid).
-- @function Zippy:get_terms
-- @tparam string seller_uuid
-- @return the terms

--- Creates a product (POST /products).
-- @function Zippy:create_product
-- @tparam table p `uuid` (a UUID string), `name`, `external_id`, `seller_id` (all required)
-- @return the product

--- A product (GET /products/:uuid).
-- @function Zippy:get_product
-- @tparam string uuid a UUID string
-- @return the product

--- Products, optionally filtered (GET /products).
-- @function Zippy:list_products
-- @tparam[opt] table filter `seller_id`, `external_id`
-- @return the products

--- Changes some fields of a seller (GET, then PUT /sellers/:uuid with the whole seller).
-- Zippy's PUT is a full replacement (every field left out is blanked, and the uuid in the
-- body, not the path, names the seller that changes), so paykit reads the seller, merges
-- `changes` into it and sends all of it. A `uuid` in `changes` other than `uuid` is refused.
-- Two writers updating the same seller at once: the last one wins (Zippy has no versions).
-- @tparam string uuid
-- @tparam table changes some of the seller fields of @{Zippy:create_seller}
-- @return the seller as Zippy answers it
function Zippy:update_seller(uuid, changes)
  local e = checks.key(uuid, "uuid"); if e then return nil, e end
  local body, err = kit.fields(changes, request.SELLER_FIELDS, "seller")
  if not body then return nil, err end
  if next(body) == nil then return nil, errors.validation("seller", "empty", "update_seller needs a field to change") end
  if body.uuid ~= nil and body.uuid ~= uuid then
    return nil, errors.validation("uuid", "mismatch",
      "the uuid in changes differs from the seller being updated (Zippy would change that other seller)")
  end
  err = request.check_seller(body, true)
  if err then return nil, err end
  local current
  current, err = self:get_seller(uuid)
  if not current then return nil, err end
  if type(current) ~= "table" or (current.uuid ~= nil and current.uuid ~= uuid) then
    return nil, errors.provider { code = "invalid_response", op = "zippy.update_seller", provider = PROVIDER,
      message = "zippy.update_seller: GET /sellers/:uuid did not answer that seller" }
  end
  local full
  full, err = request.full_seller(uuid, body, current)
  if not full then return nil, err end
  return self:call("PUT", "/sellers/" .. core.pct_encode(uuid), { op = "update_seller", body = full })
end

--- Checks and normalises a transaction; returns the JSON body or nil, err. No network.
-- See `paykit.providers.zippy_request.transaction_body` (the instance's default URLs filled in).
-- @tparam table t the transaction's fields
-- @tparam[opt] table names the caller's names of the fields, for the errors
-- @treturn table the request body
-- @return[2] nil
-- @return[2] a validation error naming the field
function Zippy:transaction_body(t, names)
  return request.transaction_body(self.defaults, t, names)
end

-- POST /transactions with a checked body. Not idempotent: Zippy does not make
-- ext_transaction_id unique, a repeat could start a second one. `unique`: the
-- ext_transaction_id carries purchase's random part, no claim is needed. `text`: the body's
-- JSON already written (request.transaction_json), else the table is written by the kit.
local kwire = require "paykit.kit.wire"
local core_decode, read_opts = core.json_decode, kit.json.read_opts
-- the reader's options of Zippy's answers (kit.wire's for wire.exact), made again if replaced
local exact_now, exact_opts = wire.exact, kit.json.read_opts(wire.exact)
local function post_transaction(self, body, field, unique, text)
  if not unique then
    local err = request.claim_reference(self.references, body, field)
    if err then return nil, err end
  end
  if text == nil then
    return self:call("POST", "/transactions", { body = body, op = "create_transaction", idempotent = false })
  end
  -- what call does, with the body's text and the headers the kit gives a JSON body: the kit's
  -- commit itself (gw:commit only refuses unknown fields, and this table has none), the
  -- headers made for this call (own_headers: paykit.http fills them in place, no copy)
  local req = { method = "POST", path = "/transactions", body = text,
    headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, idempotent = false,
    own_headers = true, url = nil, op = nil }
  local res, err = kwire.send(self, "create_transaction", req)
  if not res then return nil, err end
  -- a 2xx JSON answer is the transaction: what kwire.answer gives of it (its info, which
  -- post_transaction drops, not made); anything else is kwire.answer's to read
  local status, answer = res.status, res.body
  if status >= 200 and status < 300 and answer ~= "" and type(answer) == "string" then
    if wire.exact ~= exact_now then exact_now, exact_opts = wire.exact, read_opts(wire.exact) end
    answer = core_decode(answer, exact_opts)
    if answer ~= nil then return answer end
  end
  local info
  answer, info = kwire.answer(self, res, req)
  if answer == nil then return nil, info end
  return answer
end

-- The checked body of a transaction and its JSON text (nil when the kit writes the table):
-- the common case in one C call, else transaction_body (its URLs then remembered).
local zippy_transaction, PRICED = core.zippy_transaction, request.PRICED
local function checked_body(self, t, names)
  local text = zippy_transaction(t, self.defaults, self.good_urls, PRICED) -- request.transaction_json
  if text then return t, nil, text end
  local body, err = request.transaction_body(self.defaults, t, names)
  if not body then return nil, err end
  request.remember_urls(self.good_urls, body)
  return body
end

--- Creates a transaction (POST /transactions); never retried once it may have been sent.
-- @tparam table t the fields of @{Zippy:transaction_body}
-- @return the transaction (with uuid, status, token)
function Zippy:create_transaction(t)
  local body, err, text = checked_body(self, t)
  if not body then return nil, err end
  return post_transaction(self, body, nil, nil, text)
end

--- The payment page URL for a transaction's token.
-- @tparam string token the transaction's token
-- @treturn string base_url .. "/payment/start?tx=" .. token (percent-encoded)
-- @return[2] nil
-- @return[2] a validation error (token not a string)
function Zippy:payment_url(token)
  if type(token) ~= "string" or token == "" then
    return nil, errors.validation("token", "invalid", "payment_url takes the transaction's token (a string)")
  end
  return self.base_url .. "/payment/start?tx=" .. core.pct_encode(tostring(token))
end

--- Asks Zippy to check a signed notice (POST /notices). -> true | false, reason | nil, err
-- Zippy's reference server answers 409 for a notice without a sig and 500 for an unknown key
-- id, and checks a notice of key id 0 with its newest key: rely on @{Zippy:verify_notice}.
-- @tparam string signed the signed notice
-- @treturn boolean true when Zippy says OK; false, reason otherwise
-- @treturn ?string the reason for false
-- @return[2] nil
-- @return[2] err
function Zippy:check_notice(signed)
  if signed == nil then return nil, errors.validation("qs", "required", "the signed notice is required") end
  if type(signed) ~= "string" or signed == "" or #signed > check.MAX_NOTICE or signed:find("%c") then
    return nil, errors.validation("qs", "invalid", "the signed notice must be a string of 1-" .. check.MAX_NOTICE
      .. " bytes without control characters")
  end
  local res, err = self:call("POST", "/notices", { body = { qs = signed }, op = "check_notice", idempotent = true })
  if not res then return nil, err end
  if type(res) ~= "table" then
    return nil, errors.provider { code = "invalid_response", provider = PROVIDER, message = "zippy.check_notice: unexpected answer" }
  end
  if res.result == "OK" then return true end
  return false, tostring(res.reason or "")
end

--- Whether Zippy's API answers (GET /status).
-- @treturn boolean true when the answer is `{result = "OK"}`
-- @return[2] nil
-- @return[2] err
function Zippy:ping(...)
  if select("#", ...) > 0 then return nil, errors.validation("ping", "invalid", "ping takes no arguments: gw:ping()") end
  local res, err = self:call("GET", "/status", { op = "status" })
  if not res then return nil, err end
  return type(res) == "table" and res.result == "OK"
end

--- Verifies a signed notice with the instance's notice keys.
-- @tparam string raw the signed notice, as received
-- @treturn table `{ext_transaction_id=, error=, key_id=}`
-- @return[2] nil
-- @return[2] a signature error (see `paykit.providers.zippy_notice.verify`)
function Zippy:verify_notice(raw)
  local map, list_or_err, key_id = self.verify_raw(raw)
  if not map then return nil, list_or_err end
  return { ext_transaction_id = map.ext_transaction_id, error = map.error, key_id = key_id }
end

-- The fields of test_notice's table.
local TEST_NOTICE_FIELDS = { ext_transaction_id = true, error = true, key_id = true }

--- A signed notice for the merchant's own tests (this instance's newest notice key, or key_id).
-- @tparam[opt] table t `ext_transaction_id` (default "test"), `error`, `key_id`
-- @treturn string the signed notice
-- @return[2] nil
-- @return[2] a config error `unknown_key`
function Zippy:test_notice(t)
  if t == nil then t = {} end
  local _, err = kit.fields(t, TEST_NOTICE_FIELDS, "test_notice")
  if err then return nil, err end
  local fields = { { "ext_transaction_id", t.ext_transaction_id or "test" } }
  if t.error then fields[2] = { "error", t.error } end
  return self.sign_notice(fields, t.key_id)
end

local NONCE_SEP, NONCE_BYTES, NONCE_HEX = "~", 6, 12 -- 6 random bytes, 12 hex digits

--- Starts a payment (uniform flow): creates a transaction, answers its payment page.
-- purchase{product_id, amount|amount_minor|price, currency, pay_method, carrier, region,
--   reference|ext_transaction_id, success_url, error_url, callback_success_url,
--   callback_error_url (or instance defaults), product_image_url}
-- `return_url` stands for success_url and error_url, `notify_url` for both callback URLs; an
-- unknown field is refused by name.
--
-- A `reference` is sent as `reference .. "~" .. 12 random hex digits`, so that a notice names
-- one transaction alone (README, "One transaction, one id"): the result's `reference` and
-- `keep.ext_transaction_id` are that string, `keep.reference` is yours.
-- @tparam table p the fields above
-- @treturn table result "redirect" with `redirect_url` and `keep`
--   (`ext_transaction_id`, `uuid`, `token`, `amount`, `currency`)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Zippy:purchase(p)
  local t, names = request.purchase_fields(p)
  if not t then return nil, names end
  local unique, err = false
  if self.reference_nonce and names.ext_transaction_id == "reference" then
    err = checks.text(t.ext_transaction_id, "reference", check.MAX_TEXT - #NONCE_SEP - NONCE_HEX)
    if err then return nil, err end
    t.ext_transaction_id = t.ext_transaction_id .. NONCE_SEP .. core.random_hex(NONCE_BYTES)
    unique = true
  end
  local body, text
  body, err, text = checked_body(self, t, names)
  if not body then return nil, err end
  local tx
  tx, err = post_transaction(self, body, names.ext_transaction_id, unique, text)
  if not tx then return nil, err end
  local function invalid(message)
    return nil, errors.provider { code = "invalid_response", op = "zippy.create_transaction", provider = PROVIDER,
      message = "zippy.create_transaction: " .. message }
  end
  if type(tx) ~= "table" or type(tx.token) ~= "string" or tx.token == "" then
    return invalid("the answer carries no token")
  end
  -- Zippy answers the transaction it created: the buyer is never sent to one that is not
  -- what was asked for (another price, currency, id or product). Text fields are compared.
  for _, k in ipairs { "price", "currency", "ext_transaction_id", "product_id" } do
    if type(tx[k]) == "string" and tx[k] ~= body[k] then
      return invalid("the answer's " .. k .. " is not the one sent; the buyer is not sent to it")
    end
  end
  return kit.result {
    status = "redirect", method = "GET", provider = PROVIDER,
    redirect_url = self:payment_url(tx.token),
    reference = body.ext_transaction_id, provider_reference = tx.uuid,
    amount = body.price, currency = body.currency,
    raw = tx,
    keep = { ext_transaction_id = body.ext_transaction_id, uuid = tx.uuid, token = tx.token,
             amount = body.price, currency = body.currency, reference = p.reference },
  }
end

--- Completes a payment when the buyer comes back (uniform flow).
-- `params` is the RAW query string of the return URL (or a table carrying it as .query or
-- .args): verification needs the bytes as sent. The merchant's own parameters may come first
-- (Zippy appends "?" .. notice even to a URL with a query); only the notice's bytes are verified.
-- `keep` (what purchase answered) is required: a notice for another order is refused. The
-- amount and currency of the result are the kept ones (a notice carries none).
-- @tparam string|table params the raw query string, or a table with `query` (or `args`)
-- @tparam table keep the purchase's `keep` (its ext_transaction_id must match)
-- @treturn table result "paid" or "failed"
-- @return[2] nil
-- @return[2] a validation error (field `query`: `raw_query_required`, `too_long`; field `keep`)
--   or a signature error with field `query` (`wrong_transaction`, or those of
--   @{Zippy:verify_notice})
function Zippy:complete(params, keep)
  local raw = params
  if type(params) == "table" then raw = params.query or params.args end
  if type(raw) ~= "string" then
    return nil, errors.validation("query", "raw_query_required",
      "complete needs the raw query string of the return URL (decoded parameters cannot be verified)")
  end
  if type(keep) ~= "table" or type(keep.ext_transaction_id) ~= "string" or keep.ext_transaction_id == "" then
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

--- Handles Zippy's callback (uniform flow; `paykit.kit.notify`).
-- `req` is `{method=, query=, body=, headers=}` with the raw body (signed_notice=...), the raw
-- body as a string, or the decoded parameters (`{signed_notice = "..."}`). The result's
-- `reference` is the notice's ext_transaction_id; `duplicate` is true for a notice of a
-- transaction already notified (per payment: another outcome of it too).
-- @function Zippy:notification
-- @tparam table|string req the request
-- @treturn table result "paid" or "failed", `duplicate`
-- @treturn table reply 200 "OK"
-- @return[2] nil
-- @return[2] a validation error (field `req`) or a signature error (field `body` or `signed_notice`)
-- @return[2] table reply 400 (503 when the store did not answer)

--- Always a provider error `unsupported` (uniform flow): Zippy has no transaction lookup.
-- @param ref the reference (only named in the message)
-- @return nil
-- @return a provider error `unsupported`
function Zippy:status(ref)
  return nil, errors.new { kind = "provider", code = "unsupported", provider = PROVIDER, op = "zippy.status",
    message = "Zippy has no transaction lookup (GET /transactions/:uuid is not part of its API); "
      .. "the outcome of " .. tostring(ref) .. " arrives only as a signed notice (complete / notification)" }
end

return _M
