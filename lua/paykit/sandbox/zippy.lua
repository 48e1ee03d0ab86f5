-- The Zippy simulator: the REST API (sellers, terms, products, transactions, notices, status)
-- behind OAuth 1.0 two-legged HMAC-SHA1, and the hosted payment pages (card form; carrier
-- billing with phone number then SMS PIN). Behaves like Zippy's reference server as described
-- in shared/specs/zippy-notes.md. Base URL: http://127.0.0.1:PORT/zippy
--
-- Credentials (exported below):
--   consumer key     "sandbox-key"
--   consumer secret  "sandbox-secret"   (any non-empty oauth_token is accepted, version "1.0")
--   notice keys      id 0 "zippy-notice-secret-0", id 1 "zippy-notice-secret-1"
--                    notices are signed with the newest id (1) unless POST /zippy/_sandbox/keys
--                    {"sign_with": 0} says otherwise (for key-rotation tests; reset clears it).
--   timestamps must be within 300 s of the sandbox's clock (nonces are not tracked: the
--   reference server does not, and a transport retry re-sends the same signed request).
--
-- Card page (pay_method CARD): fields id="card-number", id="card-expiry" (MM/YY, not in the
-- past), id="card-cvc" (3-4 digits), button id="pay"; id="cancel" gives up (USER_CANCELLED).
--   4111111111111111, 5555555555554444   approved
--   4000000000000002                     declined: error CC_ERROR
--   any other Luhn-valid number          declined: error CC_ERROR
--   a number failing Luhn, a bad expiry or CVC   the form again with a message (HTTP 200)
-- Carrier page (pay_method OPERATOR): id="phone" (6-15 digits, optional leading +), button
-- id="send"; then id="pin", button id="confirm".
--   PIN 1234                             approved
--   any other PIN                        failed: error DIR_BILL_ERROR
--   phone number 0000000000              the carrier refuses it at once: DIR_BILL_ERROR
-- Failures on demand (POST /transactions): ext_transaction_id "sandbox-fail-500" answers
-- HTTP 500; "sandbox-slow" answers after 3 seconds (the transaction is created).
--
-- For tests without a browser: POST /zippy/_sandbox/pay {"token": .., "outcome": "success" |
-- "CC_ERROR" | "DIR_BILL_ERROR" | any error code} -> 200 {"Location": .., "signed_notice": ..}
-- and the callback is sent as on the pages.
-- Where the reference server (mozilla/zippy) differs from its documentation, the simulator does
-- what the reference server does (shared/specs/zippy-notes.md, "Seen on the reference server"):
--   * the redirect is success_url .. "?" .. notice even when success_url has a query already;
--   * PUT /sellers/:uuid replaces the seller named by the body's uuid (required, else a plain
--     text 500 "Server Error"); every field left out is stored as "";
--   * DELETE of an unknown seller is 204; GET /products?seller_id=<unknown> is 404 NotFoundError;
--   * a duplicate seller uuid is 409 InvalidArgumentError {"uuid": "UUID must be unique"}; a
--     duplicate external_id and unknown fields are 409 InvalidArgumentError with a plain-text
--     message ("external_id must be unique per seller", "Unrecognized fields: colour");
--   * region is stored and answered as a string;
--   * POST /notices: no sig is a 409 InvalidArgumentError, an unknown key id a plain-text 500,
--     and a notice of key id 0 is checked with the newest key (a genuine key-0 notice FAILs).
-- GET /zippy/_sandbox/requests -> {"requests": N}: how many requests reached the simulator
-- (every path but /zippy/_sandbox/..., malformed ones included), for specs that prove a call
-- was refused before the network.
local cjson = require "cjson.safe"
local core = require "paykit.core"

local M = {}

M.CONSUMER_KEY = "sandbox-key"
M.CONSUMER_SECRET = "sandbox-secret"
M.NOTICE_KEYS = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }
M.NEWEST_KEY_ID = 1
M.TIMESTAMP_WINDOW = 300
M.APPROVE_PIN = "1234"
M.APPROVE_CARDS = { ["4111111111111111"] = true, ["5555555555554444"] = true }
M.DECLINE_CARD = "4000000000000002"
M.REFUSED_PHONE = "0000000000"

M.CURRENCIES = {}
for c in ("AUD CAD CHF COP DKK EGP EUR GBP HUF IDR MXN MYR NOK NZD PHP PLN QAR SEK SGD THB USD ZAR"):gmatch("%u+") do
  M.CURRENCIES[c] = true
end

---------------------------------------------------------------------------- pure helpers

local pct = function(s) return core.pct_encode(tostring(s)) end

-- RFC 5849 3.4.1: METHOD & pct(base URI) & pct(normalized params). `params` is a list of
-- {name, value} (oauth_* without oauth_signature and realm, plus the query's params).
function M.base_string(method, base_uri, params)
  local list = {}
  for _, kv in ipairs(params) do list[#list + 1] = { pct(kv[1]), pct(kv[2]) } end
  table.sort(list, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local parts = {}
  for i, kv in ipairs(list) do parts[i] = kv[1] .. "=" .. kv[2] end
  return method:upper() .. "&" .. pct(base_uri) .. "&" .. pct(table.concat(parts, "&"))
end

function M.oauth_signature(base, consumer_secret, token_secret)
  return core.hmac("sha1", pct(consumer_secret) .. "&" .. pct(token_secret or ""), base, "base64")
end

-- A signed notice: fields is a list of {name, value}; keys defaults to NOTICE_KEYS.
function M.sign_notice(fields, key_id, keys)
  keys = keys or M.NOTICE_KEYS
  key_id = key_id or M.NEWEST_KEY_ID
  local parts = {}
  for i, kv in ipairs(fields) do parts[i] = pct(kv[1]) .. "=" .. pct(kv[2]) end
  local qs = table.concat(parts, "&")
  return qs .. "&sig=" .. key_id .. ":" .. core.hmac("sha256", keys[key_id], qs, "hex")
end

-- The reference server's check of a notice (used by POST /notices). true or false, reason.
function M.verify_notice(signed, keys)
  keys = keys or M.NOTICE_KEYS
  if type(signed) ~= "string" then return false, "signature missing" end
  local cut
  local from = 1
  while true do
    local s = signed:find("&sig=", from, true)
    if not s then break end
    cut, from = s, s + 1
  end
  if not cut then return false, "signature missing" end
  local id, sig = signed:sub(cut + 5):match("^(%d+):(%x+)$")
  if not id then return false, "signature malformed" end
  local key = keys[tonumber(id)]
  if not key then return false, "unknown signature key" end
  local want = core.hmac("sha256", key, signed:sub(1, cut - 1), "hex")
  if not core.consteq(want, sig:lower()) then return false, "signature mismatch" end
  return true, ""
end

---------------------------------------------------------------------------- errors

local ERROR_NAMES = {
  [400] = "BadRequestError", [401] = "InvalidCredentialsError", [404] = "ResourceNotFoundError",
  [405] = "MethodNotAllowedError", [409] = "ConflictError", [500] = "InternalError",
}

function M.fail(util, status, message, name)
  return util.json(status, { error = { code = status, status = status,
    name = name or ERROR_NAMES[status] or "Error", message = message } })
end

-- 409 InvalidArgumentError: message is a JSON string mapping field -> message.
local fail = M.fail
local function invalid(util, fields)
  return fail(util, 409, cjson.encode(fields), "InvalidArgumentError")
end

---------------------------------------------------------------------------- state

function M.state(util)
  local s = util.store("zippy")
  if not s.sellers then
    s.sellers, s.seller_order = {}, {}
    s.products, s.product_order = {}, {}
    s.transactions, s.by_token = {}, {}
    s.sign_with = M.NEWEST_KEY_ID
  end
  return s
end

---------------------------------------------------------------------------- OAuth

local function parse_authorization(header)
  if type(header) ~= "string" then return nil end
  local rest = header:match("^%s*[Oo][Aa][Uu][Tt][Hh]%s+(.*)$")
  if not rest then return nil end
  local params = {}
  for item in (rest .. ","):gmatch("%s*([^,]*),") do
    if item ~= "" then
      local k, v = item:match('^([%w_]+)%s*=%s*"([^"]*)"%s*$')
      if not k then return nil end
      local dk, dv = core.pct_decode(k), core.pct_decode(v)
      if not dk or not dv then return nil end
      if params[dk] ~= nil then return nil end
      params[dk] = dv
    end
  end
  return params
end

local state = M.state

-- nil when the request is properly signed, else the reason (not shown to the client).
local function check_oauth(util)
  local header = ngx.req.get_headers()["authorization"]
  if type(header) == "table" then return "several Authorization headers" end
  local p = parse_authorization(header)
  if not p then return "missing or malformed OAuth Authorization header" end
  if p.oauth_consumer_key ~= M.CONSUMER_KEY then return "unknown consumer key" end
  if p.oauth_signature_method ~= "HMAC-SHA1" then return "signature method must be HMAC-SHA1" end
  if p.oauth_version ~= "1.0" then return "oauth_version must be 1.0" end
  if not p.oauth_token or p.oauth_token == "" then return "oauth_token missing" end
  if not p.oauth_nonce or p.oauth_nonce == "" then return "oauth_nonce missing" end
  local ts = p.oauth_timestamp and p.oauth_timestamp:match("^%d+$") and tonumber(p.oauth_timestamp)
  if not ts then return "oauth_timestamp missing or malformed" end
  if math.abs(ngx.time() - ts) > M.TIMESTAMP_WINDOW then return "oauth_timestamp outside the window" end
  if not p.oauth_signature or p.oauth_signature == "" then return "oauth_signature missing" end

  local params = {}
  for k, v in pairs(p) do
    if k ~= "realm" and k ~= "oauth_signature" then params[#params + 1] = { k, v } end
  end
  local qs = util.query_string()
  if qs ~= "" then
    local _, pairs_ = core.form_decode(qs)
    if not pairs_ then return "malformed query string" end
    for _, kv in ipairs(pairs_) do params[#params + 1] = kv end
  end
  local host = (ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port)):lower()
  local scheme = ngx.var.scheme:lower()
  if scheme == "http" then host = host:gsub(":80$", "") elseif scheme == "https" then host = host:gsub(":443$", "") end
  local path = ngx.var.request_uri:match("^[^?]*")
  local base = M.base_string(ngx.req.get_method(), scheme .. "://" .. host .. path, params)
  local want = M.oauth_signature(base, M.CONSUMER_SECRET, "")
  if not core.consteq(want, p.oauth_signature) then return "signature mismatch" end

  return nil
end

---------------------------------------------------------------------------- validation

local function is_url(v)
  return type(v) == "string" and v:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/%s?#]+[^%s]*$") ~= nil
end

-- The fields of `body` that neither `spec` nor `ignore` knows, sorted; nil when none.
local function unknown_fields(body, spec, ignore)
  local list = {}
  for k in pairs(body) do
    if type(k) ~= "string" or not (spec[k] or (ignore and ignore[k])) then list[#list + 1] = tostring(k) end
  end
  if #list == 0 then return nil end
  table.sort(list)
  return list
end

-- Checks `body` against `spec` = {field = {required=bool, check=fn(v) -> message|nil}}.
-- Fields spec does not know are dropped. Returns clean table or nil, errors (a map of
-- field -> message). Unknown fields are refused first, by the caller (see json_input).
local function validate(body, spec)
  local errs, clean, any = {}, {}, false
  for k, v in pairs(body) do
    if spec[k] then clean[k] = v end
  end
  for k, rule in pairs(spec) do
    local v = body[k]
    if v == nil or v == cjson.null or v == "" then
      clean[k] = nil
      if rule.required then errs[k] = "This field is required."; any = true end
    elseif not errs[k] and rule.check then
      local msg = rule.check(v)
      if msg then errs[k] = msg; any = true end
    end
  end
  if any then return nil, errs end
  return clean
end

local function check_string(v)
  if type(v) ~= "string" then return "This field must be a string." end
end
local function check_url(v)
  if not is_url(v) then return "This field must be a fully qualified http(s) URL." end
end
local function one_of(list)
  local set = {}
  for _, x in ipairs(list) do set[x] = true end
  return function(v)
    if not set[v] then return "This field must be one of " .. table.concat(list, ", ") .. "." end
  end
end

local SELLER = {
  uuid = { required = true, check = check_string },
  status = { required = true, check = one_of { "ACTIVE", "INACTIVE", "DISABLED" } },
  name = { required = true, check = check_string },
  email = { required = true, check = function(v)
    if type(v) ~= "string" or not v:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then return "This field must be an email address." end
  end },
  agreement = { check = function(v)
    if type(v) ~= "string" or not v:match("^%d%d%d%d%-%d%d%-%d%d$") then return "This field must be a date (YYYY-MM-DD)." end
  end },
}

local PRODUCT = {
  uuid = { required = true, check = check_string },
  name = { required = true, check = check_string },
  external_id = { required = true, check = check_string },
  seller_id = { required = true, check = check_string },
}

local TRANSACTION = {
  product_id = { required = true, check = function(v)
    if type(v) ~= "string" and type(v) ~= "number" then return "This field must be a product id." end
  end },
  region = { required = true, check = function(v)
    if not tostring(v):match("^%d+$") then return "This field must be a numeric MCC." end
  end },
  carrier = { required = true, check = check_string },
  price = { required = true, check = function(v)
    if type(v) ~= "string" or not v:match("^[0-9]+%.[0-9][0-9]$") then
      return "This field must be in the format of 0.00."
    end
  end },
  currency = { required = true, check = function(v)
    if not M.CURRENCIES[v] then return "This field must be a supported currency." end
  end },
  pay_method = { required = true, check = one_of { "CARD", "OPERATOR" } },
  success_url = { required = true, check = check_url },
  error_url = { required = true, check = check_url },
  callback_success_url = { required = true, check = check_url },
  callback_error_url = { required = true, check = check_url },
  ext_transaction_id = { required = true, check = check_string },
  product_image_url = { check = check_url },
}
local RESOURCE_FIELDS = { resource_pk = true, resource_name = true, resource_uri = true }

local function with_resource(obj, name, pk)
  local out = {}
  for k, v in pairs(obj) do out[k] = v end
  out.resource_pk = pk
  out.resource_name = name
  out.resource_uri = "/" .. name .. "/" .. pk
  return out
end

-- A collection (sellers, products) is a map uuid -> record and its uuids in creation order.
-- GET: the records that keep(record) accepts (all without keep), oldest first.
local function listing(util, map, order, name, keep)
  local list = {}
  for _, uuid in ipairs(order) do
    local r = map[uuid]
    if r and (not keep or keep(r)) then list[#list + 1] = with_resource(r, name, uuid) end
  end
  return util.json_array(200, list)
end

-- POST: the new record kept, and the 201 with it.
local function created(util, map, order, name, clean)
  map[clean.uuid] = clean
  order[#order + 1] = clean.uuid
  return util.json(201, with_resource(clean, name, clean.uuid))
end

-- 409 InvalidArgumentError with a plain-text message, as the reference server answers
-- unknown fields and a duplicate external_id (not a JSON map).
local function invalid_text(util, text)
  return fail(util, 409, text, "InvalidArgumentError")
end

-- The reference server's plain-text 500 (no JSON).
local function server_error(util)
  return util.send(500, "Server Error", "text/plain")
end

-- The request's JSON object, checked against `spec` when given (see validate).
-- Returns it, or nil and the 400 / 409 answer already sent.
local function json_input(util, spec, ignore)
  local body = util.json_body()
  if not body or body[1] ~= nil then return nil, fail(util, 400, "the body must be a JSON object") end
  if not spec then return body end
  local unknown = unknown_fields(body, spec, ignore)
  if unknown then return nil, invalid_text(util, "Unrecognized fields: " .. table.concat(unknown, ", ")) end
  local clean, errs = validate(body, spec)
  if not clean then return nil, invalid(util, errs) end
  return clean
end

---------------------------------------------------------------------------- API handlers

-- PUT /sellers/:uuid as the reference server does it: a full replacement of the seller named
-- by the body's uuid (not the path's); without a uuid in the body a plain-text 500; every
-- field left out is stored as "" (a seller sent without status is no longer ACTIVE).
local SELLER_ORDER = { "uuid", "status", "name", "email", "agreement" }
local function replace_seller(util, s)
  local body, sent = json_input(util)
  if not body then return sent end
  local unknown = unknown_fields(body, SELLER, RESOURCE_FIELDS)
  if unknown then return invalid_text(util, "Unrecognized fields: " .. table.concat(unknown, ", ")) end
  if type(body.uuid) ~= "string" or body.uuid == "" then return server_error(util) end
  local target = body.uuid
  if not s.sellers[target] then return fail(util, 404, "no seller " .. target) end
  local errs, any, record = {}, false, {}
  for _, k in ipairs(SELLER_ORDER) do
    local v = body[k]
    if v == nil or v == cjson.null or v == "" then
      record[k] = ""
    else
      local msg = SELLER[k].check and SELLER[k].check(v)
      if msg then errs[k], any = msg, true end
      record[k] = v
    end
  end
  if any then return invalid(util, errs) end
  s.sellers[target] = record
  return util.json(200, with_resource(record, "sellers", target))
end

local function sellers(util, method, id)
  local s = state(util)
  if not id then
    if method == "GET" then
      return listing(util, s.sellers, s.seller_order, "sellers")
    elseif method == "POST" then
      local clean, sent = json_input(util, SELLER, RESOURCE_FIELDS)
      if not clean then return sent end
      if s.sellers[clean.uuid] then return invalid(util, { uuid = "UUID must be unique" }) end
      return created(util, s.sellers, s.seller_order, "sellers", clean)
    end
    return fail(util, 405, "method not allowed")
  end
  local seller = s.sellers[id]
  if method == "DELETE" then
    -- the reference server answers 204 for an unknown uuid too
    s.sellers[id] = nil
    for i, uuid in ipairs(s.seller_order) do
      if uuid == id then table.remove(s.seller_order, i); break end
    end
    return util.send(204, "")
  end
  if not seller then return fail(util, 404, "no seller " .. id) end
  if method == "GET" then
    return util.json(200, with_resource(seller, "sellers", id))
  elseif method == "PUT" then
    return replace_seller(util, s)
  end
  return fail(util, 405, "method not allowed")
end

local function terms(util, method, id)
  if method ~= "GET" then return fail(util, 405, "method not allowed") end
  local seller = id and state(util).sellers[id]
  if not seller then return fail(util, 404, "no seller " .. tostring(id)) end
  return util.json(200, with_resource({
    text = "Sandbox terms of service for " .. seller.name .. ": no real money moves in the sandbox.",
    agreement = seller.agreement or "",
  }, "terms", id))
end

local function products(util, method, id)
  local s = state(util)
  if id then
    if method ~= "GET" then return fail(util, 405, "method not allowed") end
    local p = s.products[id]
    if not p then return fail(util, 404, "no product " .. id) end
    return util.json(200, with_resource(p, "products", id))
  end
  if method == "GET" then
    local q = util.query()
    if q.seller_id and not s.sellers[q.seller_id] then
      return fail(util, 404, "seller " .. tostring(q.seller_id) .. " not found", "NotFoundError")
    end
    return listing(util, s.products, s.product_order, "products", function(p)
      return (not q.seller_id or q.seller_id == p.seller_id) and (not q.external_id or q.external_id == p.external_id)
    end)
  elseif method == "POST" then
    local clean, sent = json_input(util, PRODUCT, RESOURCE_FIELDS)
    if not clean then return sent end
    local seller = s.sellers[clean.seller_id]
    if not seller then return invalid(util, { seller_id = "This seller does not exist." }) end
    if seller.status ~= "ACTIVE" then return invalid(util, { seller_id = "This seller is not ACTIVE." }) end
    if s.products[clean.uuid] then return fail(util, 409, "a product with this uuid already exists") end
    for _, p in pairs(s.products) do
      if p.seller_id == clean.seller_id and p.external_id == clean.external_id then
        return invalid_text(util, "external_id must be unique per seller")
      end
    end
    clean.status = "ACTIVE"
    return created(util, s.products, s.product_order, "products", clean)
  end
  return fail(util, 405, "method not allowed")
end

local function transactions(util, method, id)
  local s = state(util)
  if id then
    -- Not in the reference API (see zippy-notes.md): only POST /transactions exists.
    return fail(util, 404, "no such resource")
  end
  if method ~= "POST" then return fail(util, 405, "method not allowed") end
  local clean, sent = json_input(util, TRANSACTION, RESOURCE_FIELDS)
  if not clean then return sent end
  local product = s.products[tostring(clean.product_id)]
  if not product or product.status ~= "ACTIVE" then
    return invalid(util, { product_id = "This product does not exist or is not ACTIVE." })
  end
  if clean.ext_transaction_id == "sandbox-fail-500" then
    return fail(util, 500, "sandbox: failure on demand")
  end
  clean.region = tostring(clean.region) -- stored and answered as a string, as the reference server
  clean.uuid = core.uuid4()
  clean.status = "STARTED"
  clean.token = core.random_hex(64)
  local tx = {}
  for k, v in pairs(clean) do tx[k] = v end
  s.transactions[clean.uuid] = tx
  s.by_token[clean.token] = tx
  if clean.ext_transaction_id == "sandbox-slow" then ngx.sleep(3) end
  return util.json(201, with_resource(clean, "transactions", clean.uuid))
end

local NOTICE = { qs = { required = true, check = check_string } }

local function notices(util, method)
  if method ~= "POST" then return fail(util, 405, "method not allowed") end
  local clean, sent = json_input(util, NOTICE)
  if not clean then return sent end
  -- the reference server's ways: no sig is a 409, an unknown key id a plain 500, and key id 0
  -- stands for "the newest key" (a genuine notice of key 0 is then a mismatch there)
  local id = clean.qs:match("&sig=(%d+):%x*$")
  if not clean.qs:find("&sig=", 1, true) then
    return invalid_text(util, "signature missing")
  end
  if id and not M.NOTICE_KEYS[tonumber(id)] then return server_error(util) end
  local qs = clean.qs
  if id == "0" then qs = qs:gsub("&sig=0:(%x*)$", "&sig=" .. M.NEWEST_KEY_ID .. ":%1") end
  local ok, reason = M.verify_notice(qs)
  return util.json(200, { result = ok and "OK" or "FAIL", reason = ok and "" or reason })
end

---------------------------------------------------------------------------- the end of a payment

-- Ends the transaction: redirect (301) to success/error URL with the signed notice and
-- the callback POST (one attempt, as the reference server: no retry).
function M.finish(util, tx, error_code)
  local s = state(util)
  local fields = { { "ext_transaction_id", tx.ext_transaction_id } }
  if error_code then fields[2] = { "error", error_code } end
  local signed = M.sign_notice(fields, s.sign_with)
  tx.status = error_code and "FAILED" or "COMPLETED"
  tx.error = error_code
  local back = error_code and tx.error_url or tx.success_url
  -- as the reference server: always "?", even when the URL has a query already
  local location = back .. "?" .. signed
  util.notify {
    provider = "zippy",
    url = error_code and tx.callback_error_url or tx.callback_success_url,
    method = "POST",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = "signed_notice=" .. core.pct_encode(signed),
    attempts = 1,
  }
  return location, signed
end
local finish = M.finish

---------------------------------------------------------------------------- sandbox-only calls

local function sandbox_call(util, method, what)
  if what == "requests" and method == "GET" then
    return util.json(200, { requests = state(util).requests or 0 })
  end
  if method ~= "POST" then return fail(util, 405, "method not allowed") end
  local body, sent = json_input(util)
  if not body then return sent end
  local s = state(util)
  if what == "pay" then
    local tx = type(body.token) == "string" and s.by_token[body.token]
    if not tx then return fail(util, 404, "no transaction for this token") end
    if tx.status ~= "STARTED" and tx.status ~= "PENDING" then return fail(util, 400, "this transaction is already finished") end
    local outcome = body.outcome or "success"
    if type(outcome) ~= "string" or not outcome:match("^[%w_]+$") then
      return invalid(util, { outcome = "This field must be success or an error code." })
    end
    local location, signed = finish(util, tx, outcome ~= "success" and outcome or nil)
    return util.json(200, { Location = location, signed_notice = signed })
  elseif what == "keys" then
    local id = tonumber(body.sign_with)
    if not id or not M.NOTICE_KEYS[id] then return invalid(util, { sign_with = "This field must be a notice key id." }) end
    s.sign_with = id
    return util.json(200, { sign_with = id })
  end
  return fail(util, 404, "unknown sandbox call")
end

---------------------------------------------------------------------------- dispatch

local API = { sellers = sellers, terms = terms, products = products, transactions = transactions }

function M.handle(util)
  local method = ngx.req.get_method()
  local path = util.subpath("zippy")
  if path:sub(1, 10) ~= "/_sandbox/" then
    local s = state(util)
    s.requests = (s.requests or 0) + 1
  end
  local top, id, extra = path:match("^/([%w_]+)/?([^/]*)/?(.*)$")
  if not top then return fail(util, 404, "no such resource") end
  if id == "" then id = nil end
  if extra ~= "" then return fail(util, 404, "no such resource") end
  if top == "payment" then return require("paykit.sandbox.zippy_pages").handle(M, util, method, id) end
  if top == "_sandbox" then return sandbox_call(util, method, id) end
  if top == "status" and not id then
    if method ~= "GET" then return fail(util, 405, "method not allowed") end
    return util.json(200, { result = "OK" })
  end
  local handler = API[top] or (top == "notices" and not id and notices)
  if not handler then return fail(util, 404, "no such resource") end
  local why = check_oauth(util)
  if why then
    return fail(util, 401, "invalid OAuth credentials: " .. why)
  end
  return handler(util, method, id)
end

return M
