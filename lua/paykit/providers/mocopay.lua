--- paykit.providers.mocopay: MoCoPay mobile carrier billing (pay by SMS / operator billing).
--
-- Options of paykit.mocopay{...}:
--
--   api_key, api_secret   credentials (required); the secret never leaves the signer closure
--   base_url              "http(s)://host[:port][/prefix]" (required); the prefix is part of
--                         the signed request path
--   digest                "md5" (default) | "sha1" (the 20-byte variant some deployments use)
--   signature_in          "header" (default: `Signature: ApiKey {key}:{sig}`) | "param"
--                         (`signature={key}:{sig}` query parameter)
--   encode_values         false (default) | true. UNCONFIRMED by MoCoPay: whether names and values
--                         are percent-encoded (RFC 3986) in the signed string. The published
--                         vector needs no encoding, so raw decoded values are the default.
--   paths                 { init = "/v1/payment/initPayment", verify = "/v1/payment/verifyPayment" }
--   callback_url, notify_url   defaults for every purchase
--   notify_path           path the notifications arrive on (signed with the parameters); taken
--                         from notify_url when not given; req.path wins when the caller passes it
--   require_signature     false (default): an unsigned notification is accepted as a hint
--                         (it is always confirmed with verifyPayment); true refuses it
--   notification_reply    body answered to an accepted notification, "OK" by default
--                         (UNCONFIRMED what MoCoPay expects)
--   confirm_return        true (default): complete() confirms PaymentComplete with verifyPayment;
--                         false: a PaymentComplete return is only "pending" (no call)
--   duplicate_wait        seconds a delivery of a notification waits for the same notification
--                         already being verified (60; only where waiting can yield)
--   duplicate_capacity    notifications remembered (1024)
--   logger, hooks, timeout, connect_timeout, retry, ...   as paykit.http
--
-- Binding (the return and unsigned notifications are unsigned query strings): a session is
-- taken for a purchase only when verifyPayment, asked about that very session, answers with
-- the purchase's requestId or referenceId (UNCONFIRMED that MoCoPay echoes them; the sandbox
-- does). An answer naming another purchase is refused; one naming none is "pending"
-- (`bound = false`) until a signed notification. See Client:complete, Client:status,
-- Client:notification.
--
-- Signature (mocopay-notes.md): base64(DIGEST(api_secret .. canonical(path, params))) where
-- canonical(path, params) = path .. "?" .. name=value pairs (signature excluded) sorted by name
-- in byte order, joined with "&". See M.canonical, M.sign.
--
-- Module fields: `PROVIDER` ("mocopay"), `COUNTRIES` (ISO 3166-1 alpha-2 set), `LANGUAGES`
-- (ISO 639-1 set), `INIT_PARAMS` (initPayment parameter names, in order), `Client` (the
-- instance metatable).
-- @module paykit.providers.mocopay
-- @usage
--   local paykit = require "paykit"
--   local gw = paykit.mocopay{ api_key = "app1", api_secret = "...", base_url = "https://host:8182" }
--   local r = gw:purchase{ pid = "12000", reference = "order-42", return_url = "https://shop/back",
--                          notify_url = "https://shop/mocopay/notify", client_ip = "203.0.113.9" }
--   -- r.status == "redirect": send the buyer to r.redirect_url, store r.keep with the order
--   local done = gw:complete(query_of_the_return, keep)      -- confirmed with verifyPayment
--   local res, reply = gw:notification{ method = "GET", path = uri, query = args }
--   local st = gw:status(done.session_id, keep)              -- verifyPayment, bound to keep
local core = require "paykit.core"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local codes = require "paykit.providers.mocopay_codes"
local cjson = require "cjson.safe"

local M = { PROVIDER = "mocopay" }

local find, format = string.find, string.format

-- ------------------------------------------------------------------------- signing

-- The signature lives in paykit.providers.mocopay_sign; these are the same functions.
local signing = require "paykit.providers.mocopay_sign"
local to_pairs = signing.to_pairs
local DIGESTS = signing.DIGESTS

--- The string MoCoPay signs after the secret (@{paykit.providers.mocopay_sign.canonical}).
-- Vector: canonical("/v1/payment/initPayment/", {mcc="228", mnc="01", pid="12000", userId="123456789"})
--   == "/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789"
-- @function canonical
-- @tparam string path the request path
-- @tparam[opt] table params the parameters
-- @tparam[opt] boolean encode percent-encode names and values first
-- @treturn string the canonical string
M.canonical = signing.canonical

--- The signature of a request (@{paykit.providers.mocopay_sign.sign}).
-- Vector: sign("this.is.a.secret", "/v1/payment/initPayment/",
--   {mcc="228", mnc="01", pid="12000", userId="123456789"}) == "WETDyNQLx0+8BJ16vDgiVg=="
-- @function sign
-- @tparam string secret the api_secret
-- @tparam string path the request path
-- @tparam table params the parameters
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string base64 signature
M.sign = signing.sign

--- The X-Signature value: the api key, a colon and the signature (@{paykit.providers.mocopay_sign.signature_value}).
-- @function signature_value
-- @tparam string api_key the api_key
-- @tparam string secret the api_secret
-- @tparam string path the request path
-- @tparam table params the parameters
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string the value
M.signature_value = signing.signature_value

--- A signed notification query string, for merchants' own tests
-- (@{paykit.providers.mocopay_sign.signed_query}).
-- @function signed_query
-- @tparam string api_key the api_key
-- @tparam string secret the api_secret
-- @tparam string path the notification path
-- @tparam table params the notification parameters
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string the query string
M.signed_query = signing.signed_query

-- ------------------------------------------------------------------------- validation

-- The ISO code sets and address validators live in paykit.providers.mocopay_codes.
M.COUNTRIES, M.LANGUAGES = codes.COUNTRIES, codes.LANGUAGES

--- Whether s is an IPv4 address (@{paykit.providers.mocopay_codes.is_ipv4}).
-- @function is_ipv4
-- @param s the value
-- @treturn boolean
M.is_ipv4 = codes.is_ipv4

--- Whether s is an IPv6 address (@{paykit.providers.mocopay_codes.is_ipv6}).
-- @function is_ipv6
-- @param s the value
-- @treturn boolean
M.is_ipv6 = codes.is_ipv6

--- Whether s is an IPv4 or IPv6 address (@{paykit.providers.mocopay_codes.is_ip}).
-- @function is_ip
-- @param s the value
-- @treturn boolean
M.is_ip = codes.is_ip

--- Whether s is an absolute http(s) URL (@{paykit.providers.mocopay_codes.is_http_url}).
-- @function is_http_url
-- @param s the value
-- @treturn boolean
M.is_http_url = codes.is_http_url

-- initPayment parameters and how each is checked.
local function plain(max)
  return function(v) return #v >= 1 and #v <= max and not find(v, "%c") end
end
local INIT_RULES = {
  pid = { plain(64), "must be a product id (1-64 characters, no control characters)" },
  mcc = { function(v) return v:match("^%d%d%d$") ~= nil end, "must be a 3-digit mobile country code" },
  mnc = { function(v) return v:match("^%d%d%d?$") ~= nil end, "must be a 2- or 3-digit mobile network code" },
  country = { function(v) return codes.COUNTRIES[v] == true end, "must be an ISO 3166-1 alpha-2 country code" },
  userId = { plain(255), "must be 1-255 characters without control characters" },
  clientIp = { M.is_ip, "must be an IPv4 or IPv6 address" },
  phone = { function(v) return v:match("^%+?%d%d%d+$") ~= nil and #v <= 21 end,
            "must be a phone number: digits with an optional leading +, 3 to 20 digits" },
  lang = { function(v) return codes.LANGUAGES[v] == true end, "must be an ISO 639-1 language code" },
  referenceId = { plain(255), "must be 1-255 characters without control characters" },
  callbackUrl = { M.is_http_url, "must be an absolute http(s) URL" },
  notifyUrl = { M.is_http_url, "must be an absolute http(s) URL" },
  imageUrl = { M.is_http_url, "must be an absolute http(s) URL" },
}
M.INIT_PARAMS = { "pid", "mcc", "mnc", "country", "userId", "clientIp", "phone", "lang",
                  "referenceId", "callbackUrl", "notifyUrl", "imageUrl" }

--- Checks initPayment parameters (API names).
-- `names` maps an API name to the name the caller
-- used (for the error's field). Returns true or nil, validation error naming the field.
-- @tparam table params `pid` (required), `mcc`, `mnc`, `country`, `userId`, `clientIp`, `phone`,
--   `lang`, `referenceId`, `callbackUrl`, `notifyUrl`, `imageUrl`: strings
-- @tparam[opt] table names API name to the caller's name, e.g. `{callbackUrl = "return_url"}`
-- @treturn boolean true
-- @return[2] nil
-- @return[2] a validation error: `unknown`, `required`, `invalid_type` or `invalid`
function M.validate_init(params, names)
  names = names or {}
  if type(params) ~= "table" then return nil, errors.validation("params", "invalid", "initPayment parameters must be a table") end
  for k in pairs(params) do
    if k == "signature" then
      return nil, errors.validation("signature", "reserved", "the signature is made by paykit; do not pass one")
    end
    if not INIT_RULES[k] then
      return nil, errors.validation(tostring(k), "unknown", "initPayment has no parameter " .. tostring(k))
    end
  end
  for _, k in ipairs(M.INIT_PARAMS) do
    local v, field = params[k], names[k] or k
    if v == nil then
      if k == "pid" then return nil, errors.validation(field, "required", field .. " is required") end
    elseif type(v) ~= "string" then
      return nil, errors.validation(field, "invalid_type", field .. " must be a string")
    elseif not INIT_RULES[k][1](v) then
      return nil, errors.validation(field, "invalid", field .. " " .. INIT_RULES[k][2])
    end
  end
  return true
end

-- ------------------------------------------------------------------------- results

local PAID = { authorized = true, charged = true, completed = true, complete = true, paid = true,
               success = true, successful = true, active = true, paymentcomplete = true }
local FAILED = { cancelled = true, canceled = true, expired = true, failed = true, rejected = true,
                 declined = true, error = true, paymentcancelled = true, paymentexpired = true,
                 paymentfailed = true, stopped = true }

--- A MoCoPay status word as a result status.
-- Provider status word -> "paid" | "failed" | "pending".
-- @tparam string s e.g. "PaymentComplete", "Charged", "Expired" (case-insensitive)
-- @treturn string "paid", "failed" or "pending" (anything unknown)
function M.map_status(s)
  local k = type(s) == "string" and s:lower() or ""
  if PAID[k] then return "paid" end
  if FAILED[k] then return "failed" end
  return "pending"
end

local function int(v)
  if type(v) ~= "number" or v ~= math.floor(v) then return v end
  return math.tointeger and math.tointeger(v) or v
end

local function nonnull(v)
  if v == cjson.null then return nil end
  return v
end

-- An amount as an exact decimal string, read from the JSON text when possible (no float trip).
local function amount_of(body, json, name)
  local v = nonnull(json[name])
  if v == nil then return nil end
  local text = body and body:match('"' .. name .. '"%s*:%s*(%-?%d[%d%.eE+%-]*)')
  if text and text:match("^%-?%d+%.?%d*$") then return text end
  if type(v) == "number" then
    if v == math.floor(v) then return format("%d", v) end
    return format("%.14g", v)
  end
  return tostring(v)
end

local AMOUNTS = { charged_amount = "chargedAmount", failed_amount = "failedAmount",
                  last_charged_amount = "lastChargedAmount", last_failed_amount = "lastFailedAmount",
                  total_charged_amount = "totalChargedAmount", total_failed_amount = "totalFailedAmount" }

--- Every field of a verifyPayment answer, in Lua names. Amounts are decimal strings.
-- @tparam table json the decoded answer
-- @tparam[opt] string body the raw answer (amounts are read from its text, never through a float)
-- @treturn table `session_id`, `request_id` and `reference_id` (when the answer names the
--   purchase the session belongs to), `service_code`, `pid`, `type`, `lang`, `series`, `status`,
--   `currency_code`, `recurrent`, `expires_in`, `time_init`, `time_authorized`,
--   `time_last_successful_payment`, `transactions`, `end_user` `{user_id, phone, mcc, mnc}`,
--   and the amounts `charged_amount`, `failed_amount`, `last_charged_amount`,
--   `last_failed_amount`, `total_charged_amount`, `total_failed_amount`
function M.payment_info(json, body)
  local info = {
    session_id = nonnull(json.sessionId), request_id = nonnull(json.requestId), reference_id = nonnull(json.referenceId),
    service_code = nonnull(json.serviceCode), pid = nonnull(json.pid),
    type = nonnull(json.type), lang = nonnull(json.lang), series = int(nonnull(json.series)),
    status = nonnull(json.status), currency_code = nonnull(json.currencyCode),
    recurrent = nonnull(json.recurrent), expires_in = int(nonnull(json.expiresIn)),
    time_init = nonnull(json.timeInit), time_authorized = nonnull(json.timeAuthorized),
    time_last_successful_payment = nonnull(json.timeLastSuccessfullPayment),
    transactions = {},
  }
  for lua_name, api_name in pairs(AMOUNTS) do info[lua_name] = amount_of(body, json, api_name) end
  if type(json.transactions) == "table" then
    for i, t in ipairs(json.transactions) do info.transactions[i] = t end
  end
  local eu = type(json.endUser) == "table" and json.endUser or nil
  if eu then
    info.end_user = { user_id = nonnull(eu.userId), phone = nonnull(eu.phone), mcc = nonnull(eu.mcc), mnc = nonnull(eu.mnc) }
  end
  return info
end

local function payment_result(info, json)
  return gateway.result {
    status = M.map_status(info.status), provider = M.PROVIDER, provider_reference = info.session_id,
    amount = info.total_charged_amount, currency = info.currency_code, code = info.status,
    message = "MoCoPay session " .. tostring(info.status), payment = info, raw = json,
  }
end

-- ------------------------------------------------------------------------- the client

local Client = {}
Client.__index = Client
Client.__tostring = function(self) return "paykit.mocopay(" .. self.api_key .. ")" end
M.Client = Client

local function split_url(url)
  local origin, path = url:match("^(https?://[^/?#]+)(/?[^?#]*)$")
  if not origin then return nil end
  path = path:gsub("/+$", "")
  return origin, path
end

local function cfg_string(opts, name, required)
  local v = opts[name]
  if v == nil then
    if required then error(errors.config(name, "required", name .. " is required"), 3) end
    return nil
  end
  if type(v) ~= "string" or v == "" then error(errors.config(name, "invalid", name .. " must be a non-empty string"), 3) end
  return v
end

--- A MoCoPay instance.
-- paykit.mocopay{...} -> instance (raises a config error for missing or malformed options).
-- The secret lives only in the instance's signing closures.
-- @tparam table opts the options listed in the module description
-- @treturn Client the instance
-- @raise a config error (a `paykit.errors` table) naming the option
function M.new(opts)
  if type(opts) ~= "table" then error(errors.config("opts", "invalid", "paykit.mocopay expects a table of options"), 2) end
  local api_key = cfg_string(opts, "api_key", true)
  local secret = cfg_string(opts, "api_secret", true)
  local base_url = cfg_string(opts, "base_url", true)
  local origin, base_path = split_url(base_url)
  if not origin or not M.is_http_url(base_url) then
    error(errors.config("base_url", "invalid", "base_url must be an absolute http(s) URL without query"), 2)
  end
  local digest = opts.digest or "md5"
  if not DIGESTS[digest] then error(errors.config("digest", "invalid", "digest must be \"md5\" or \"sha1\""), 2) end
  local signature_in = opts.signature_in or "header"
  if signature_in ~= "header" and signature_in ~= "param" then
    error(errors.config("signature_in", "invalid", "signature_in must be \"header\" or \"param\""), 2)
  end
  for _, name in ipairs { "callback_url", "notify_url" } do
    if opts[name] ~= nil and not M.is_http_url(opts[name]) then
      error(errors.config(name, "invalid", name .. " must be an absolute http(s) URL"), 2)
    end
  end
  local paths = opts.paths or {}
  local encode = opts.encode_values == true
  local base = gateway.base(M.PROVIDER, opts)
  local self = setmetatable({
    provider = M.PROVIDER, api_key = api_key, origin = origin, base_path = base_path,
    digest = digest, signature_in = signature_in, encode_values = encode,
    init_path = paths.init or "/v1/payment/initPayment",
    verify_path = paths.verify or "/v1/payment/verifyPayment",
    callback_url = opts.callback_url, notify_url = opts.notify_url,
    notify_path = opts.notify_path or (opts.notify_url and opts.notify_url:match("^https?://[^/?#]+(/[^?#]*)")),
    require_signature = opts.require_signature == true,
    notification_reply = opts.notification_reply or "OK",
    confirm_return = opts.confirm_return ~= false,
    duplicate_wait = opts.duplicate_wait or 60,
    log = base.log, http = base.http, seen = base.seen,
  }, Client)
  -- The secret lives only in these closures: an instance printed or logged shows no secret.
  self.sign = function(path, params) return M.sign(secret, path, params, digest, encode) end
  self.check = function(key, path, params, given)
    if not core.consteq(key, api_key) then return false end
    return core.consteq(M.sign(secret, path, params, digest, encode), given)
  end
  return self
end

-- Provider error for a non-200 or unreadable answer.
-- A 5xx is retryable only for a call that may be sent again: initPayment may have opened a
-- session before the server failed, so its 5xx is an unknown outcome, not a retry.
local function answer_error(op, res, json, idempotent)
  local pcode = json and (gateway.field(json, { "errorCode", "code", "error" }))
  local pmsg = json and (gateway.field(json, { "errorMessage", "message", "error_description" }))
  if type(pcode) ~= "string" and type(pcode) ~= "number" then pcode = nil end
  if type(pmsg) ~= "string" then pmsg = nil end
  local code
  if res.status == 401 or res.status == 403 then code = "unauthorized"
  elseif res.status >= 500 then code = "server_error"
  elseif res.status == 404 then code = "not_found"
  elseif res.status ~= 200 then code = "rejected"
  else code = "invalid_response" end
  return errors.provider {
    code = code, status = res.status, provider = M.PROVIDER, op = op,
    provider_code = pcode and tostring(pcode) or nil, provider_message = pmsg,
    retryable = res.status >= 500 and idempotent == true,
    message = "MoCoPay " .. op .. " answered HTTP " .. res.status ..
      (pcode and (" " .. tostring(pcode)) or "") .. (pmsg and (": " .. pmsg) or ""),
  }
end

--- A MoCoPay instance (from @{new}).
-- @type Client

--- One signed call. Returns json, body | nil, err.
-- Only a call marked idempotent is retried after it may have reached MoCoPay: initPayment
-- opens a payment session each time it arrives, so it is sent once (idempotent false);
-- verifyPayment only reads (idempotent true).
-- @tparam string op the operation name, e.g. "verifyPayment"
-- @tparam string method "GET" or "POST"
-- @tparam string endpoint the path after base_url's prefix
-- @tparam table params the query parameters (signed)
-- @tparam boolean idempotent whether the call may be sent again
-- @treturn table the decoded JSON answer
-- @treturn string the raw body
-- @return[2] nil
-- @return[2] a transport error or a provider error: `unauthorized`, `server_error`,
--   `not_found`, `rejected`, `invalid_response`
function Client:call(op, method, endpoint, params, idempotent)
  local path = self.base_path .. endpoint
  local sig = self.api_key .. ":" .. self.sign(path, params)
  local query = to_pairs(params)
  local headers = { Accept = "application/json" }
  if self.signature_in == "param" then
    query[#query + 1] = { "signature", sig }
  else
    headers.Signature = "ApiKey " .. sig
  end
  local res, err = self.http:request {
    method = method, url = self.origin .. path .. "?" .. core.canonical_query(query), headers = headers,
    body = method == "POST" and "" or nil, op = "mocopay." .. op, idempotent = idempotent == true,
  }
  if not res then return nil, err end
  local json = res.body and res.body ~= "" and cjson.decode(res.body) or nil
  if res.status ~= 200 or type(json) ~= "table" then return nil, answer_error(op, res, type(json) == "table" and json or nil, idempotent) end
  return json, res.body
end

--- initPayment with API parameter names. Returns {request_id, redirect_url, raw} | nil, err.
-- @tparam table params initPayment parameters (see @{validate_init})
-- @tparam[opt] table names API name to the caller's name, for error fields
-- @treturn table `{request_id=, redirect_url=, raw=}`
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Client:init_payment(params, names)
  local ok, err = M.validate_init(params, names)
  if not ok then return nil, err end
  local json, body = self:call("initPayment", "GET", self.init_path, params, false)
  if not json then return nil, body end
  local request_id, redirect = json.requestId, json.redirectUrl
  if type(request_id) ~= "string" or type(redirect) ~= "string" or not M.is_http_url(redirect) then
    return nil, errors.provider { code = "invalid_response", provider = M.PROVIDER, op = "initPayment",
      message = "MoCoPay initPayment answer lacks requestId or a valid redirectUrl" }
  end
  self.log("info", "mocopay initPayment requestId=" .. request_id)
  return { request_id = request_id, redirect_url = redirect, raw = json }
end

-- purchase field -> initPayment parameter
local PURCHASE = {
  pid = "pid", product = "pid", mcc = "mcc", mnc = "mnc", country = "country", user_id = "userId",
  client_ip = "clientIp", phone = "phone", lang = "lang", reference = "referenceId",
  return_url = "callbackUrl", callback_url = "callbackUrl", notify_url = "notifyUrl", image_url = "imageUrl",
}

--- Starts a payment (uniform flow, initPayment).
-- gw:purchase{pid=, reference=, return_url|callback_url=, notify_url=, user_id=, client_ip=, phone=,
-- mcc=, mnc=, country=, lang=, image_url=} -> result "redirect" with keep {request_id, reference_id, pid}.
-- A reference is generated when none is given, so that the buyer's return can be matched.
-- @tparam table p the fields above (`pid` or `product` required); the instance's
--   callback_url and notify_url are the defaults; any other field is a validation error
-- @treturn table result "redirect" with `redirect_url`, `provider_reference` (requestId), `keep`
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Client:purchase(p)
  if type(p) ~= "table" then return nil, errors.validation("purchase", "invalid", "purchase expects a table") end
  local params, names = {}, {}
  for k, v in pairs(p) do
    local api = PURCHASE[k]
    if not api then return nil, errors.validation(tostring(k), "unknown", "purchase has no field " .. tostring(k)) end
    if params[api] ~= nil then return nil, errors.validation(tostring(k), "duplicate", tostring(k) .. " repeats " .. names[api]) end
    params[api], names[api] = v, k
  end
  params.callbackUrl = params.callbackUrl or self.callback_url
  params.notifyUrl = params.notifyUrl or self.notify_url
  if params.referenceId == nil then params.referenceId = core.random_hex(16) end
  local init, err = self:init_payment(params, names)
  if not init then return nil, err end
  return gateway.result {
    status = "redirect", provider = M.PROVIDER, reference = params.referenceId,
    provider_reference = init.request_id, redirect_url = init.redirect_url, method = "GET",
    keep = { request_id = init.request_id, reference_id = params.referenceId, pid = params.pid },
    raw = init.raw,
  }
end

local VERIFY_BY = { sessionId = "session_id", userId = "user_id", transactionId = "transaction_id" }

local function same(a, b) return type(a) == "string" and type(b) == "string" and core.consteq(a, b) end

-- A signature error (forged, tampered or another payment's data) naming the field at fault.
local function forged(field, code, message)
  return errors.new { kind = "signature", field = field, code = code, message = message }
end

-- Whether a verifyPayment answer is about what was asked: the session asked for, the buyer
-- asked for, or a session holding the transaction asked for.
local function answered_for(by, value, info)
  if type(info.session_id) ~= "string" or info.session_id == "" then
    return nil, errors.provider { code = "invalid_response", provider = M.PROVIDER, op = "verifyPayment",
      message = "MoCoPay verifyPayment answer names no sessionId" }
  end
  if by == "sessionId" and not same(info.session_id, value) then
    return nil, forged("sessionId", "session_mismatch", "verifyPayment answered for another session than the one asked about")
  end
  if by == "userId" and not same(info.end_user and info.end_user.user_id, value) then
    return nil, forged("userId", "user_mismatch", "verifyPayment answered for another buyer than the one asked about")
  end
  if by == "transactionId" then
    local found = false
    for _, t in ipairs(info.transactions) do if same(t, value) then found = true end end
    if not found then
      return nil, forged("transactionId", "transaction_mismatch", "verifyPayment answered with a session that does not hold the transaction asked about")
    end
  end
  return true
end

-- Checks that a session's answer belongs to the purchase `keep` describes, and names the
-- result after it. The answer must carry this purchase's requestId or referenceId (neither
-- may differ); an answer carrying neither cannot be bound and comes back "pending"
-- (bound = false) whatever the session's state: the payment is then confirmed only by a
-- signed notification (`signed`: a notification whose signature covers the session and the
-- reference binds them itself). Returns the result or nil, err.
local function bind(r, keep, signed)
  local p = r.payment
  if keep.session_id ~= nil and not same(p.session_id, keep.session_id) then
    return nil, forged("sessionId", "session_mismatch", "the session is not the one this purchase is bound to")
  end
  if p.request_id ~= nil and not same(p.request_id, keep.request_id) then
    return nil, forged("requestId", "request_mismatch", "verifyPayment says the session belongs to another purchase (requestId)")
  end
  if p.reference_id ~= nil and not same(p.reference_id, keep.reference_id) then
    return nil, forged("referenceId", "reference_mismatch", "verifyPayment says the session belongs to another purchase (referenceId)")
  end
  if keep.pid ~= nil and p.pid ~= nil and not same(tostring(p.pid), keep.pid) then
    return nil, forged("pid", "product_mismatch", "the session is for another product")
  end
  r.reference, r.request_id, r.session_id = keep.reference_id, keep.request_id, p.session_id
  if p.request_id == nil and p.reference_id == nil and not signed then
    r.status, r.bound = "pending", false
    r.message = "MoCoPay session " .. tostring(p.status) .. ", but the answer does not name this purchase: waiting for a signed notification"
  else
    r.bound = true
    -- what to keep from now on: the purchase, bound to this session
    r.keep = { request_id = keep.request_id, reference_id = keep.reference_id, pid = keep.pid, session_id = p.session_id }
  end
  return r
end

local function check_keep(keep)
  if type(keep) ~= "table" or type(keep.request_id) ~= "string" or type(keep.reference_id) ~= "string"
    or (keep.session_id ~= nil and type(keep.session_id) ~= "string")
    or (keep.pid ~= nil and type(keep.pid) ~= "string") then
    return nil, errors.validation("keep", "invalid", "keep must be the table purchase returned ({request_id, reference_id, pid})")
  end
  return true
end

--- A session's state (verifyPayment).
-- verifyPayment by exactly one of sessionId, userId, transactionId (API or Lua names).
-- Returns result (status from the session's status; `payment` holds every answered field).
-- @tparam table|string by `{sessionId=}`, `{userId=}` or `{transactionId=}` (or `session_id`,
--   `user_id`, `transaction_id`); a string is a sessionId
-- @treturn table result ("paid", "failed", "pending") with `payment` (see @{payment_info})
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Client:verify_payment(by)
  if type(by) == "string" then by = { sessionId = by } end
  if type(by) ~= "table" then return nil, errors.validation("sessionId", "required", "verifyPayment needs sessionId, userId or transactionId") end
  local chosen, value, count = nil, nil, 0
  for _, api in ipairs { "sessionId", "userId", "transactionId" } do
    local lua = VERIFY_BY[api]
    local v = by[api]
    if v ~= nil and by[lua] ~= nil then
      return nil, errors.validation(lua, "duplicate", lua .. " repeats " .. api)
    end
    if v == nil then v = by[lua] end
    if v ~= nil then
      if type(v) ~= "string" or v == "" or #v > 255 or find(v, "%c") then
        return nil, errors.validation(api, "invalid", api .. " must be 1-255 characters without control characters")
      end
      chosen, value, count = api, v, count + 1
    end
  end
  for k in pairs(by) do
    if not VERIFY_BY[k] and k ~= "session_id" and k ~= "user_id" and k ~= "transaction_id" then
      return nil, errors.validation(tostring(k), "unknown", "verifyPayment has no parameter " .. tostring(k))
    end
  end
  if count == 0 then return nil, errors.validation("sessionId", "required", "verifyPayment needs one of sessionId, userId, transactionId") end
  if count > 1 then return nil, errors.validation(chosen, "exclusive", "verifyPayment takes exactly one of sessionId, userId, transactionId") end
  local json, body = self:call("verifyPayment", "POST", self.verify_path, { [chosen] = value }, true)
  if not json then return nil, body end
  local info = M.payment_info(json, body)
  local ok, err = answered_for(chosen, value, info)
  if not ok then
    self.log("warn", "mocopay verifyPayment answered for another " .. chosen)
    return nil, err
  end
  return payment_result(info, json)
end

--- The status of a payment (uniform flow): @{Client:verify_payment}.
-- gw:status(ref[, keep]): ref is a sessionId string or {sessionId=|userId=|transactionId=}.
-- With the purchase's `keep` the answer must belong to that purchase (as in @{Client:complete}):
-- another purchase's session is an error (`request_mismatch`, `reference_mismatch`,
-- `product_mismatch`), and an answer that does not name the purchase is "pending".
-- Without keep the result describes the session only; never take it for an order.
-- @tparam string|table ref
-- @tparam[opt] table keep the `keep` of the purchase result
-- @treturn table result
-- @return[2] nil
-- @return[2] err
function Client:status(ref, keep)
  if keep ~= nil then
    local ok, err = check_keep(keep)
    if not ok then return nil, err end
    local asked = type(ref) == "string" and ref or type(ref) == "table" and (ref.sessionId or ref.session_id) or nil
    if keep.session_id ~= nil and asked ~= nil and not same(asked, keep.session_id) then
      return nil, forged("sessionId", "session_mismatch", "the session is not the one this purchase is bound to")
    end
  end
  local r, err = self:verify_payment(ref)
  if not r or keep == nil then return r, err end
  return bind(r, keep)
end

local function decode_params(params)
  if type(params) == "string" then
    local q = params:match("%?(.*)$") or params
    local map, e = core.query_decode(q)
    if not map then return nil, errors.validation("params", "invalid_query", "return parameters are not a valid query string: " .. tostring(e)) end
    return map
  end
  if type(params) ~= "table" then return nil, errors.validation("params", "invalid", "return parameters must be a table or a query string") end
  return params
end

-- The one value of a return parameter: every spelling of the name (case-insensitive) counted;
-- a repeated or missing one is refused (a forger's second sessionId must not be the one read).
local function single(p, name)
  local lname, found, n = name:lower(), nil, 0
  for k, v in pairs(p) do
    if type(k) == "string" and k:lower() == lname then
      n = n + (type(v) == "table" and #v or 1)
      found = v
    end
  end
  if n == 0 then return nil, errors.validation(name, "required", "the return lacks " .. name) end
  if n > 1 then
    return nil, errors.validation(name, "repeated", "the return carries " .. name .. " more than once")
  end
  if type(found) == "table" then found = found[1] end
  if type(found) ~= "string" or found == "" or #found > 255 or find(found, "%c") then
    return nil, errors.validation(name, "invalid", name .. " must be 1-255 characters without control characters")
  end
  return found
end

--- Completes a payment when the buyer comes back (uniform flow).
-- gw:complete(params, keep): the buyer's return to callbackUrl (sid, sessionId, requestId,
-- referenceId, status). The return is not signed: anyone can write one, with any sessionId.
-- So requestId and referenceId must match what purchase kept, sid must equal sessionId (each
-- given once), and PaymentComplete is confirmed with verifyPayment for that session: the
-- answer must be about that very session and must name this purchase (its requestId or
-- referenceId; `keep.pid` must match its pid). An answer naming another purchase is an error;
-- an answer naming none gives "pending" (`bound = false`: MoCoPay's echo of requestId /
-- referenceId is UNCONFIRMED; the signed notification then settles the payment). With the
-- instance's confirm_return false, no call is made: PaymentComplete is only "pending", a
-- return saying cancelled, expired or failed is "failed" (the return's word, unconfirmed).
-- @tparam table|string params the return's parameters, or its query string (or URL)
-- @tparam table keep the `keep` of the purchase result (`session_id` may be added once known:
--   the return must then be for that session)
-- @treturn table result "paid", "failed" or "pending", with `session_id`, `request_id`,
--   `callback_status`, `bound` and, when bound, `keep` (the purchase's keep with `session_id`:
--   store it in place of the old one, later returns and status checks must then be for it)
-- @return[2] nil
-- @return[2] a validation error, a signature error (`request_mismatch`, `reference_mismatch`,
--   `session_mismatch`, `product_mismatch`), or verifyPayment's error
function Client:complete(params, keep)
  local p, err = decode_params(params)
  if not p then return nil, err end
  local ok, kerr = check_keep(keep)
  if not ok then return nil, kerr end
  local v = {}
  for _, k in ipairs { "requestId", "sid", "sessionId", "referenceId", "status" } do
    local value, verr = single(p, k)
    if not value then return nil, verr end
    v[k] = value
  end
  if not same(v.requestId, keep.request_id) then
    return nil, forged("requestId", "request_mismatch", "the return's requestId is not the one this purchase started")
  end
  if not same(v.referenceId, keep.reference_id) then
    return nil, forged("referenceId", "reference_mismatch", "the return's referenceId is not this purchase's")
  end
  if not same(v.sid, v.sessionId) then
    return nil, forged("sid", "session_mismatch", "the return's sid and sessionId differ")
  end
  if keep.session_id ~= nil and not same(v.sessionId, keep.session_id) then
    return nil, forged("sessionId", "session_mismatch", "the return's session is not the one this purchase is bound to")
  end
  local hinted = M.map_status(v.status)
  if not self.confirm_return then
    if hinted == "paid" then hinted = "pending" end
    return gateway.result { status = hinted, provider = M.PROVIDER, reference = keep.reference_id,
      provider_reference = v.sessionId, code = v.status, bound = false,
      message = "MoCoPay return " .. v.status .. (hinted == "pending" and " (not confirmed)" or ""),
      request_id = keep.request_id, session_id = v.sessionId, callback_status = v.status, raw = p }
  end
  local r, verr = self:verify_payment { sessionId = v.sessionId }
  if not r then return nil, verr end
  r, verr = bind(r, keep)
  if not r then
    self.log("warn", "mocopay return refused: " .. tostring(verr.code))
    return nil, verr
  end
  r.callback_status = v.status
  return r
end

-- Query parameter maps to try for the signature (body merged over query): RFC 3986 decoding
-- ("+" is "+") and, when there is a "+", form decoding ("+" is a space, gateway.form) too.
local function notification_params(req)
  local query = req.query
  if query == nil and type(req.uri) == "string" then query = req.uri:match("%?(.*)$") end
  if type(query) == "table" then return { query } end
  local sources = { query or "" }
  if type(req.body) == "string" and req.body ~= "" then sources[2] = req.body end
  local raw = {}
  for _, src in ipairs(sources) do
    local m = core.query_decode(src)
    if not m then return nil end
    for k, v in pairs(m) do raw[k] = v end
  end
  if not find(table.concat(sources, "&"), "+", 1, true) then return { raw } end
  local form = gateway.form { query = sources[1], body = sources[2] }
  if not form then return nil end
  return { raw, form }
end

--- Handles a MoCoPay notification (uniform flow).
-- gw:notification{method=, path=, query=, body=, headers=} -> result, reply | nil, err, reply.
-- Checks the `signature` parameter when present (same scheme over the notification's path and
-- parameters), then confirms the session with verifyPayment (the answer must be about the
-- notified session, and hold the notified transaction) before reporting it. result.reference
-- is the order the payment belongs to: the signed referenceId, or the one verifyPayment
-- answers; an unsigned referenceId is never taken, and one that differs from the answer's is
-- refused. result.duplicate is false for the first delivery of a payment this instance
-- processes and true for every other: a repeat of a notice (concurrent ones wait for the
-- first, in paykit.batch tasks and nginx light threads, and get its result), or another notice
-- of the same verified payment (the session notice and the transaction notice of one charge).
-- A delivery refused or not verified is not remembered.
-- @tparam table req `method`, `path` (or `uri`), `query` (raw string or decoded table), `body`, `headers`
-- @tparam[opt] table opts `keep = function(reference) -> keep | nil`: the `keep` the merchant
--   stored for that order; when given, the answer is bound to it as in @{Client:complete}
--   (its requestId, referenceId and pid must be that purchase's)
-- @treturn table result with `notification` (the notified fields, `signed`, the claimed
--   `reference_id`), `reference`, `session_id` and `duplicate`
-- @treturn table reply `{status=200, body=notification_reply, content_type="text/plain"}`
-- @return[2] nil
-- @return[2] a validation, config (no notify_path), signature (`malformed`, `bad_signature`,
--   `unknown_key`, `not_signed`, `session_mismatch`, `transaction_mismatch`,
--   `reference_mismatch`), provider (`in_progress`: the same notice is still being verified
--   where waiting is not possible) or verifyPayment error
-- @return[2] table reply to send (400, 401, or 503 when verifyPayment failed)
function Client:notification(req, opts)
  local bad = gateway.reply(400, "bad request")
  if type(req) ~= "table" then
    return nil, errors.validation("req", "invalid", "notification request must be a table {method=, path=, query=, body=, headers=}"), bad
  end
  if opts ~= nil and (type(opts) ~= "table" or (opts.keep ~= nil and type(opts.keep) ~= "function")) then
    return nil, errors.validation("opts", "invalid", "notification options must be a table {keep = function(reference) -> keep}"), bad
  end
  local candidates = notification_params(req)
  if not candidates then return nil, errors.validation("query", "invalid_query", "notification parameters are not validly encoded"), bad end
  local p = candidates[1]
  local signature = gateway.field(p, "signature")
  if signature ~= nil then
    local path = req.path or (type(req.uri) == "string" and req.uri:match("^[^?]*")) or self.notify_path
    if not path then
      return nil, errors.config("notify_path", "required", "the notification's path is needed to check its signature: pass req.path or set notify_url"), bad
    end
    local key = tostring(signature):match("^([^:]+):.")
    if not key then
      return nil, forged("signature", "malformed", "the notification's signature is not {api_key}:{signature}"),
        gateway.reply(401, "bad signature")
    end
    local valid = false
    for _, cand in ipairs(candidates) do
      local cand_sig = gateway.field(cand, "signature")
      local ck, cg = tostring(cand_sig):match("^([^:]+):(.+)$")
      if ck and self.check(ck, path, cand, cg) then valid = true; p = cand; break end
    end
    if not valid then
      self.log("warn", "mocopay notification with a bad signature refused")
      return nil, forged("signature", core.consteq(key, self.api_key) and "bad_signature" or "unknown_key",
        "the notification's signature does not verify"), gateway.reply(401, "bad signature")
    end
  elseif self.require_signature then
    return nil, forged("signature", "not_signed", "the notification carries no signature"),
      gateway.reply(401, "not signed")
  end
  local f = function(k) local v = gateway.field(p, k); return v ~= "" and v or nil end
  local session_id, transaction_id = f("sessionId"), f("transactionId")
  if not session_id and not transaction_id then
    return nil, errors.validation("sessionId", "required", "the notification names no sessionId or transactionId"), bad
  end
  for name, v in pairs { sessionId = session_id, transactionId = transaction_id } do
    if type(v) ~= "string" or #v > 255 or find(v, "%c") then
      return nil, errors.validation(name, "invalid", name .. " must be 1-255 characters without control characters"), bad
    end
  end
  local claimed_ref = f("referenceId")
  if claimed_ref ~= nil and type(claimed_ref) ~= "string" then claimed_ref = nil end
  if claimed_ref and (#claimed_ref > 255 or find(claimed_ref, "%c")) then
    return nil, errors.validation("referenceId", "invalid", "referenceId must be 1-255 characters without control characters"), bad
  end
  local reply = gateway.reply(200, self.notification_reply)
  -- This notice (signed or not: an unsigned copy must not stand for the signed one) is
  -- claimed before verifyPayment yields, so that concurrent deliveries agree on the first.
  -- (hashed: the memory holds a fixed-size key whatever the notice's fields weigh)
  local notice = "notice\0" .. core.digest("sha256", table.concat({ signature ~= nil and "signed" or "unsigned",
    session_id or "", transaction_id or "", tostring(f("status") or ""), tostring(f("series") or ""),
    tostring(f("chargedAmount") or ""), tostring(f("amount") or ""), claimed_ref or "" }, "\0"), "hex")
  local function repeat_of(first)
    local r = {}
    for k, val in pairs(first) do r[k] = val end
    r.duplicate = true
    return gateway.result(r), reply
  end
  local busy = function()
    return nil, errors.provider { code = "in_progress", provider = M.PROVIDER, op = "notification", retryable = true,
      message = "the same MoCoPay notification is being processed" }, gateway.reply(503, "try again")
  end
  local claimed, state, first = self.seen:claim(notice)
  local tries = 0
  while not claimed do
    if state == "pending" then state, first = self.seen:wait(notice, self.duplicate_wait) end
    if state == "done" then
      if first then return repeat_of(first) end
      return busy()
    end
    tries = tries + 1
    if state == "pending" or tries > 3 then return busy() end
    claimed, state, first = self.seen:claim(notice) -- released by a delivery that failed: ours now
  end
  local function refuse(err, rep)
    self.seen:release(notice)
    return nil, err, rep
  end
  local done, r, err = pcall(self.verify_payment, self,
    session_id and { sessionId = session_id } or { transactionId = transaction_id })
  if not done then
    self.seen:release(notice)
    error(r, 0)
  end
  if not r then
    if err.kind == "signature" then return refuse(err, bad) end
    return refuse(err, gateway.reply(503, "try again"))
  end
  local info = r.payment
  if transaction_id and session_id then
    local held = false
    for _, t in ipairs(info.transactions) do if same(t, transaction_id) then held = true end end
    if not held then
      return refuse(forged("transactionId", "transaction_mismatch", "the notified transaction is not in the session verifyPayment answered"), bad)
    end
  end
  -- The order it names: the signed referenceId, or the one verifyPayment answers; never an
  -- unsigned claim. Where both are known they must agree.
  if claimed_ref and info.reference_id ~= nil and not same(claimed_ref, info.reference_id) then
    self.log("warn", "mocopay notification for session " .. info.session_id .. " names another purchase")
    return refuse(forged("referenceId", "reference_mismatch", "the notification's referenceId is not the session's"), bad)
  end
  if signature ~= nil then r.reference = claimed_ref or info.reference_id else r.reference = info.reference_id end
  r.session_id = info.session_id
  r.bound = r.reference ~= nil -- the order is known: signed, or named by verifyPayment
  -- With the merchant's keep for that reference, the answer must be that purchase's too.
  local keep
  if opts and opts.keep and r.reference then
    local looked, kept = pcall(opts.keep, r.reference)
    if not looked then
      self.seen:release(notice)
      error(kept, 0)
    end
    keep = kept
  end
  if keep then
    local ok, kerr = check_keep(keep)
    if not ok then return refuse(kerr, gateway.reply(500, "error")) end
    local bound, berr = bind(r, keep, signature ~= nil)
    if not bound then
      self.log("warn", "mocopay notification for session " .. info.session_id .. " refused: " .. tostring(berr.code))
      return refuse(berr, bad)
    end
  end
  local fields = {}
  for k, val in pairs(p) do if k ~= "signature" then fields[k] = val end end
  r.notification = { session_id = session_id, transaction_id = transaction_id, status = f("status"),
                     session_type = f("sessionType"), series = f("series"), reference_id = claimed_ref,
                     signed = signature ~= nil, params = fields }
  r.raw = { notification = fields, verify = r.raw }
  -- The payment is the session's verified state: a session notice and the transaction
  -- notice of the same charge verify alike and are one payment (no yield since the answer:
  -- the first to get here records it).
  local payment = table.concat({ "payment", info.session_id, tostring(info.status), tostring(info.series),
    tostring(#info.transactions), tostring(info.total_charged_amount), tostring(info.total_failed_amount) }, "\0")
  r.duplicate = self.seen:add(payment)
  self.seen:settle(notice, r)
  self.log("info", "mocopay notification session=" .. tostring(info.session_id) .. " status=" .. tostring(r.code)
    .. (r.duplicate and " (duplicate)" or ""))
  return r, reply
end

return M
