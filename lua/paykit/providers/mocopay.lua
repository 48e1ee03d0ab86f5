--- paykit.providers.mocopay: MoCoPay mobile carrier billing (pay by SMS / operator billing).
--
-- Built on the provider kit (`paykit.kit`): this file is the flow (the declaration, purchase,
-- complete, status, verifyPayment); `paykit.providers.mocopay_request` builds and checks what
-- is sent and binds answers to purchases, `paykit.providers.mocopay_wire` signs and reads,
-- `paykit.providers.mocopay_notice` handles notifications, `paykit.providers.mocopay_sign` is
-- the signature scheme, `paykit.providers.mocopay_codes` the ISO code sets.
--
-- Options of paykit.mocopay{...} (an unknown one is refused naming the closest; a bad one
-- gives nil and a config error naming it):
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
--   amount_unit           "minor" (default) | "major". UNCONFIRMED by MoCoPay: whether the
--                         amounts of its answers are minor units (199 = 1.99 EUR, as the
--                         sandbox sends) or major ones; result.amount is money.format'ed
--                         for currencyCode either way (see paykit.providers.mocopay_wire)
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
--   duplicate_capacity    notifications remembered (1024); store, dedupe_ttl: the kit's store
--   logger, hooks, timeout, connect_timeout, retry, ...   as paykit.http
--
-- Errors: the kit's vocabulary (README, "Errors"): wrong credentials (HTTP 401/403) are a
-- config error `invalid_credentials`; 400/422 `bad_request`, 404 `not_found`, 5xx
-- `server_error` are provider errors, with MoCoPay's `errorCode` as `provider_code`. A
-- notification's signature codes are `paykit.kit.signature`'s: `unsigned`, `malformed`,
-- `unknown_key`, `bad_signature`.
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
-- instances' methods), `request`, `wire`, `notice` (the modules above).
-- @module paykit.providers.mocopay
-- @usage
--   local paykit = require "paykit"
--   local gw = assert(paykit.mocopay{ api_key = "app1", api_secret = "...", base_url = "https://host:8182" })
--   local r = gw:purchase{ pid = "12000", reference = "order-42", return_url = "https://shop/back",
--                          notify_url = "https://shop/mocopay/notify", client_ip = "203.0.113.9" }
--   -- r.status == "redirect": send the buyer to r.redirect_url, store r.keep with the order
--   local done = gw:complete(query_of_the_return, keep)      -- confirmed with verifyPayment
--   local res, reply = gw:notification{ method = "GET", path = uri, query = args }
--   local st = gw:status(done.session_id, keep)              -- verifyPayment, bound to keep
local core = require "paykit.core"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local kit = require "paykit.kit"
local checks = require "paykit.kit.checks"
local codes = require "paykit.providers.mocopay_codes"
local signing = require "paykit.providers.mocopay_sign"
local request = require "paykit.providers.mocopay_request"
local mwire = require "paykit.providers.mocopay_wire"
local notice = require "paykit.providers.mocopay_notice"

local PROVIDER = "mocopay"
local same, forged, bind, check_keep = request.same, request.forged, request.bind, request.check_keep

local OPTIONS = {
  api_key = { type = "string", required = true },
  api_secret = { type = "string", required = true, secret = true },
  base_url = { type = "url", required = true, check = function(v)
    if not v:match("^https?://[^/?#]+/?[^?#]*$") then return "must be an absolute http(s) URL without query" end
  end },
  digest = { type = "string", default = "md5", one_of = signing.DIGESTS },
  signature_in = { type = "string", default = "header", one_of = { header = true, param = true } },
  encode_values = { type = "boolean", default = false },
  amount_unit = { type = "string", default = "minor", one_of = { minor = true, major = true } },
  -- the provider's id of an answer: initPayment's answer documents requestId
  request_id_field = { type = "any", default = "requestId" },
  paths = { type = "table", check = function(v)
    for k, p in pairs(v) do
      if k ~= "init" and k ~= "verify" then return "knows only init and verify, not " .. tostring(k) end
      if type(p) ~= "string" or p:sub(1, 1) ~= "/" then return k .. " must be a path starting with /" end
    end
  end },
  callback_url = { type = "url" }, notify_url = { type = "url" }, notify_path = { type = "string" },
  require_signature = { type = "boolean", default = false },
  notification_reply = { type = "string", default = "OK" },
  confirm_return = { type = "boolean", default = true },
  duplicate_wait = { type = "number", default = 60 },
}

local P = kit.provider {
  name = PROVIDER, title = "MoCoPay", options = OPTIONS, wire = mwire,
  init = function(self, o)
    self.base_path = self.base_url:match("^https?://[^/?#]+(/?[^?#]*)$"):gsub("/+$", "")
    local paths = o.paths or {}
    self.init_path = paths.init or "/v1/payment/initPayment"
    self.verify_path = paths.verify or "/v1/payment/verifyPayment"
    self.notify_path = o.notify_path or (o.notify_url and o.notify_url:match("^https?://[^/?#]+(/[^?#]*)"))
    -- the notices being verified (claimed before verifyPayment yields: mocopay_notice)
    self.seen = gateway.seen(o.duplicate_capacity)
    -- The secret lives only in these closures: an instance printed or logged shows no secret.
    local secret, api_key, digest, encode = o.api_secret, o.api_key, o.digest, o.encode_values
    -- (path, pairs[, prefix]) -> signature; the C signer (no encoding) signs verifyPayment's key
    self.sign, self.signer = signing.signer(secret, digest, encode)
    self.verify_signed_path = self.base_path .. self.verify_path
    -- what verify_payment picks of an answer about a session asked by sessionId (nil: the
    -- answer read whole, as for the other keys; the specs compare the two)
    self.verify_map = mwire.VERIFY_MAP
    -- verifyPayment's URL by sessionId but the value (verify_payment's fast way)
    self.verify_session_url = self.base_url .. self.verify_path .. "?sessionId="
    self.signature_prefix = api_key .. ":" -- the signed value is api_key:signature
    self.header_prefix = "ApiKey " .. api_key .. ":" -- the Signature header's value before the signature
    self.check = function(key, path, params, given)
      if not core.consteq(key, api_key) then return false end
      return core.consteq(signing.sign(secret, path, params, digest, encode), given)
    end
    return self
  end,
}

local M = P
M.PROVIDER = PROVIDER
M.request, M.wire, M.notice = request, mwire, notice
M.COUNTRIES, M.LANGUAGES, M.INIT_PARAMS = codes.COUNTRIES, codes.LANGUAGES, request.INIT_PARAMS

--- A MoCoPay instance: `paykit.mocopay{...}`.
-- The secret lives only in the instance's signing closures.
-- @function new
-- @tparam table opts the options listed in the module description
-- @treturn Client the instance
-- @return[2] nil
-- @return[2] a config error naming the option (an unknown one: "did you mean ...")

-- ------------------------------------------------------------------------- signing

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

--- Checks initPayment parameters (API names): @{paykit.providers.mocopay_request.validate_init}.
-- @function validate_init
-- @tparam table params `pid` (required), `mcc`, `mnc`, `country`, `userId`, `clientIp`, `phone`,
--   `lang`, `referenceId`, `callbackUrl`, `notifyUrl`, `imageUrl`: strings
-- @tparam[opt] table names API name to the caller's name, e.g. `{callbackUrl = "return_url"}`
-- @treturn boolean true
-- @return[2] nil
-- @return[2] a validation error: `unknown`, `required`, `invalid_type` or `invalid`
M.validate_init = request.validate_init

-- ------------------------------------------------------------------------- results

--- A MoCoPay status word as a result status (@{paykit.providers.mocopay_wire.map_status}).
-- @function map_status
-- @tparam string s e.g. "PaymentComplete", "Charged", "Expired" (case-insensitive)
-- @treturn string "paid", "failed" or "pending" (anything unknown)
M.map_status = mwire.map_status

--- Every field of a verifyPayment answer, in Lua names (@{paykit.providers.mocopay_wire.payment_info}).
-- @function payment_info
-- @tparam table answer the answer as `paykit.kit.json` read it (amounts as their text)
-- @treturn table the fields
M.payment_info = mwire.payment_info

-- raw: the decoded answer, or (text) its JSON text, decoded when result.raw is first read.
-- The amount is money.format's text already (what kit.result would format again).
local READ_OPTS = kit.json.read_opts(mwire.exact)
local lazy_result, result_amount = gateway.lazy_result, mwire.result_amount

-- status word -> { result status, message } (M.map_status's and the message's), remembered for
-- strings (at most 256)
local SESSION, session_count = {}, 0
local function session_words(s)
  local status, message = M.map_status(s), "MoCoPay session " .. tostring(s)
  if type(s) == "string" and session_count < 256 then
    SESSION[s], session_count = { status, message }, session_count + 1
  end
  return status, message
end

local function payment_result(self, info, answer, text)
  local word = info.status
  local known = SESSION[word] -- (a nil key reads nil)
  local status, message
  if known then status, message = known[1], known[2] else status, message = session_words(word) end
  local currency = info.currency_code
  local t = {
    status = status, provider = PROVIDER, provider_reference = info.session_id,
    amount = result_amount(info.total_charged_amount, currency, self.amount_unit),
    currency = currency, code = word, message = message, payment = info, raw = answer,
    request_id = nil, correlation_id = nil,
  }
  -- a fresh table with a known status and no keep: what gateway.result(t, true, text) does
  if answer == nil and text ~= nil then return lazy_result(t, text, READ_OPTS) end
  return gateway.result(t, true, text, READ_OPTS)
end

local kwire = require "paykit.kit.wire"
local pick = kit.json.pick
-- payment_info of an answer in one C call (mocopay_wire.INFO_MAP); an answer that is not a
-- JSON object or array is left to kit.wire's reading (its error, as before)
local INFO_MAP, payment_info_fast = mwire.INFO_MAP, mwire.payment_info_fast
-- Lua 5.4: the table made in C (INFO_MAP); LuaJIT: the values one by one (PAYMENT_MAP) into a
-- constructor, which a trace makes cheaper than the C API's sets (both are payment_info's)
local PICK_TABLE = rawget(_G, "jit") == nil
local function picked_info(kind, ...)
  if kind ~= "object" and kind ~= "array" then return nil end
  return mwire.payment_info_of(...)
end
-- payment_info of a 200 answer's text, or nil (not JSON, or not an object or array: kit.wire's
-- reading says why)
local function info_of_text(text)
  if PICK_TABLE then
    local kind, picked = pick(text, INFO_MAP)
    if kind == "object" or kind == "array" then return payment_info_fast(picked) end
    return nil
  end
  return picked_info(pick(text, mwire.PAYMENT_MAP))
end

-- The quick result of verifyPayment asked by sessionId (quick_result below): only what the call
-- reads is picked from the answer (VERIFY_MAP); `payment` (payment_info, the same table the
-- full reading makes) and `raw` (the decoded answer) are read from the answer's text when each
-- is first read, and tostring() shows `payment` as before (raw, as every lazy raw, once read).
local redact = require "paykit.redact"
local core_json_decode = core.json_decode
local take_ids = errors.take_ids
-- a quick result -> its answer's text, until both `payment` and `raw` have been read (weak
-- keys: the text goes with the result)
local ANSWER_TEXT = setmetatable({}, { __mode = "k" })
local QUICK = {
  __index = function(r, k)
    if k ~= "payment" and k ~= "raw" then return nil end
    local text = ANSWER_TEXT[r]
    if text == nil then return nil end
    local v
    -- the text was read by both readers' parser before the result was made: it reads again
    if k == "payment" then v = info_of_text(text) else v = core_json_decode(text, READ_OPTS) end
    rawset(r, k, v)
    if rawget(r, "payment") ~= nil and rawget(r, "raw") ~= nil then ANSWER_TEXT[r] = nil end
    return v
  end,
  __tostring = function(r)
    local _ = r.payment
    return "paykit " .. redact.dump(r)
  end,
}

-- payment_result's result for an answer about the session asked for, with a status word
-- (sid), a currency (a string or nil) and a total charged (text or nil): payment and raw lazy
local function quick_result(self, sid, word, currency, total, text)
  local known = SESSION[word]
  local status, message
  if known then status, message = known[1], known[2] else status, message = session_words(word) end
  local request_id, correlation_id = take_ids()
  local t = {
    status = status, provider = PROVIDER, provider_reference = sid,
    amount = result_amount(total, currency, self.amount_unit),
    currency = currency, code = word, message = message,
    request_id = request_id, correlation_id = correlation_id,
  }
  ANSWER_TEXT[t] = text
  -- not a tail call of setmetatable: LuaJIT aborts a trace returning below its first frame there
  setmetatable(t, QUICK)
  return t
end
local pct_encode = core.pct_encode

local call_pairs -- (self, op, method, endpoint, pairs, idempotent), below Client:call
local VERIFY_OP = PROVIDER .. ".verifyPayment"

local function invalid(op, why)
  return errors.provider { code = "invalid_response", provider = PROVIDER, op = PROVIDER .. "." .. op,
    message = "MoCoPay " .. op .. " answer " .. why }
end

-- ------------------------------------------------------------------------- the client

--- A MoCoPay instance (from @{new}); the methods below return `nil, err` on failure. Called
-- with a dot (`gw.purchase{}`), a method raises saying to use a colon.
-- @type Client
local Client = P.methods
M.Client = Client

--- One request through the kit's commit (`paykit.kit.wire.commit`): what @{Client:call} uses.
-- @function Client:commit
-- @tparam string op the operation's name
-- @tparam table req the request
-- @return the decoded answer
-- @treturn table info
-- @return[2] nil
-- @return[2] err

--- One signed call. Returns the answer | nil, err.
-- Only a call marked idempotent is retried after it may have reached MoCoPay: initPayment
-- opens a payment session each time it arrives, so it is sent once (idempotent false);
-- verifyPayment only reads (idempotent true).
-- @tparam string op the operation name, e.g. "verifyPayment"
-- @tparam string method "GET" or "POST"
-- @tparam string endpoint the path after base_url's prefix
-- @tparam table params the query parameters (signed)
-- @tparam boolean idempotent whether the call may be sent again
-- @treturn table the decoded JSON answer (amounts as their text)
-- @return[2] nil
-- @return[2] a transport, config (`invalid_credentials`) or provider error (`bad_request`,
--   `not_found`, `server_error`, `invalid_response`, ...: `paykit.kit.wire`)
function Client:call(op, method, endpoint, params, idempotent)
  return call_pairs(self, op, method, endpoint, signing.to_pairs(params), idempotent)
end

-- Client:call with the parameters as string pairs already (verify_payment's one pair).
call_pairs = function(self, op, method, endpoint, query, idempotent)
  local answer, info = self:commit(op, { method = method, path = endpoint, query = query,
    body = method == "POST" and "" or nil, idempotent = idempotent == true })
  if answer == nil then return nil, info end
  if type(answer) ~= "table" or info.status ~= 200 then
    return nil, errors.provider { code = "invalid_response", status = info.status, provider = PROVIDER,
      op = PROVIDER .. "." .. op, message = "MoCoPay " .. op .. " answered HTTP " .. info.status .. " without a JSON object" }
  end
  return answer
end

--- initPayment with API parameter names. Returns {request_id, redirect_url, raw} | nil, err.
-- @tparam table params initPayment parameters (see @{validate_init})
-- @tparam[opt] table names API name to the caller's name, for error fields
-- @treturn table `{request_id=, redirect_url=, raw=}`
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Client:init_payment(params, names)
  local ok, err = request.validate_init(params, names)
  if not ok then return nil, err end
  local answer
  answer, err = self:call("initPayment", "GET", self.init_path, params, false)
  if not answer then return nil, err end
  local request_id, redirect = answer.requestId, answer.redirectUrl
  if type(request_id) ~= "string" or type(redirect) ~= "string" or not checks.is_http_url(redirect) then
    return nil, invalid("initPayment", "lacks requestId or a valid redirectUrl")
  end
  self.log("info", "mocopay initPayment requestId=" .. request_id)
  return { request_id = request_id, redirect_url = redirect, raw = answer }
end

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
  local params, names = request.purchase_params(self, p)
  if not params then return nil, names end
  local init, err = self:init_payment(params, names)
  if not init then return nil, err end
  return kit.result {
    status = "redirect", provider = PROVIDER, reference = params.referenceId,
    provider_reference = init.request_id, redirect_url = init.redirect_url, method = "GET",
    keep = { request_id = init.request_id, reference_id = params.referenceId, pid = params.pid },
    raw = init.raw,
  }
end

-- Whether a verifyPayment answer is about what was asked: the session asked for, the buyer
-- asked for, or a session holding the transaction asked for.
local consteq = core.consteq
local function answered_for(by, value, info)
  local sid = info.session_id
  if type(sid) ~= "string" or sid == "" then
    return nil, invalid("verifyPayment", "names no sessionId")
  end
  -- same(sid, value) with both known strings (value: verify_key's)
  if by == "sessionId" and not consteq(sid, value) then
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

--- A session's state (verifyPayment), asked by exactly one key.
-- The result's status is the session's; `payment` holds every answered field; `amount` is
-- the total charged, `money.format`ed (see `amount_unit`). Asked by sessionId, `payment` is
-- made from the answer's text when it is first read, as `raw` is (until then `pairs` on the
-- result lists neither; tostring() shows `payment`).
-- @tparam table|string by `{sessionId=}`, `{userId=}` or `{transactionId=}` (or `session_id`,
--   `user_id`, `transaction_id`); a string is a sessionId
-- @treturn table result ("paid", "failed", "pending") with `payment` (see @{payment_info})
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Client:verify_payment(by)
  local chosen, value, header = "sessionId", by, nil
  local fast = self.signature_in == "header" and self.signer
  -- a sessionId string: checked and signed in one C call (nil: not valid, or not a string:
  -- verify_key says why, or reads the table)
  if fast then header = fast:verify(self.verify_signed_path, chosen, by, self.header_prefix) end
  if not header then
    chosen, value = request.verify_key(by)
    if not chosen then return nil, value end
    if fast then header = fast:verify(self.verify_signed_path, chosen, value, self.header_prefix) end
  end
  -- a 200 answer is read through INFO_MAP (the members payment_info reads, nothing else
  -- built); result.raw is decoded from its text when read. Anything else: call_pairs' reading.
  -- The Signature header made above is this call's own (mocopay_wire.sign leaves it as it is).
  local req, res, err
  if header then
    -- what kwire.send makes of this request (its URL, the Accept header, the op's name; the
    -- signer's header stays), made here at once: paykit.http gets the same fields (all but
    -- `query`, which only kwire.url and the signer read: the URL holds it)
    -- the headers grown as kit.wire.send grew them (Signature, then Accept): a table made
    -- another way may list them in another order (LuaJIT), other bytes on the wire; made at
    -- its size (the nil member: a place for Accept, so that adding it is no rehash), the keys
    -- put in the same order
    local headers = { Signature = header, Accept = nil }
    headers.Accept = "application/json"
    req = { method = "POST", path = self.verify_path, body = "", idempotent = true,
      url = (chosen == "sessionId" and self.verify_session_url or (self.base_url .. self.verify_path .. "?" .. chosen .. "="))
        .. pct_encode(value),
      headers = headers, op = VERIFY_OP, own_headers = true }
    res, err = self.http:request(req)
  else
    req = { method = "POST", path = self.verify_path, query = { { chosen, value } }, body = "", idempotent = true,
      url = nil, headers = nil, op = nil, own_headers = nil }
    res, err = kwire.send(self, "verifyPayment", req)
  end
  if not res then return nil, err end
  local info, text, answer
  if res.status == 200 and type(res.body) == "string" then
    text = res.body
    local quick = self.verify_map
    if quick and chosen == "sessionId" then
      -- an answer about the session asked for, with a status word (and a currency that is text
      -- or absent): the result at once, payment_info read when result.payment is; anything
      -- else is read whole below (the same parser: an answer taken here reads the same there)
      local kind, sid, word, currency, total = pick(text, quick)
      if kind == "object" and type(sid) == "string" and sid ~= "" and type(word) == "string"
          and (currency == nil or type(currency) == "string") and consteq(sid, value) then
        return quick_result(self, sid, word, currency, type(total) == "string" and total or nil, text)
      end
    end
    info = info_of_text(text)
  end
  if not info then
    text = nil
    answer, err = kwire.answer(self, res, req)
    if answer == nil then return nil, err end
    if type(answer) ~= "table" or err.status ~= 200 then
      return nil, errors.provider { code = "invalid_response", status = err.status, provider = PROVIDER,
        op = PROVIDER .. ".verifyPayment", message = "MoCoPay verifyPayment answered HTTP " .. err.status .. " without a JSON object" }
    end
    info = M.payment_info(answer)
  end
  local ok
  ok, err = answered_for(chosen, value, info)
  if not ok then
    self.log("warn", "mocopay verifyPayment answered for another " .. chosen)
    return nil, err
  end
  return payment_result(self, info, answer, text)
end

--- The status of a payment (uniform flow): @{Client:verify_payment}.
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

--- Completes a payment when the buyer comes back (uniform flow).
-- The return to callbackUrl carries sid, sessionId, requestId, referenceId and status, and
-- is not signed: anyone can write one, with any sessionId.
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
  local p, err = request.return_params(params)
  if not p then return nil, err end
  local ok, kerr = check_keep(keep)
  if not ok then return nil, kerr end
  local v = {}
  for _, k in ipairs { "requestId", "sid", "sessionId", "referenceId", "status" } do
    local value, verr = request.single(p, k)
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
    return kit.result { status = hinted, provider = PROVIDER, reference = keep.reference_id,
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

--- Handles a MoCoPay notification (uniform flow; `paykit.providers.mocopay_notice`).
-- req is `{method=, path=, query=, body=, headers=}`, the raw parameters (a string) or the
-- decoded parameters (a table). Checks the `signature` parameter when present (same scheme over the
-- notification's path and parameters), then confirms the session with verifyPayment (the
-- answer must be about the notified session, and hold the notified transaction) before
-- reporting it. result.reference is the order the payment belongs to: the signed
-- referenceId, or the one verifyPayment answers; an unsigned referenceId is never taken, and
-- one that differs from the answer's is refused. result.duplicate is false for the first
-- delivery of a payment and true for every other: a repeat of a notice (concurrent ones wait
-- for the first, in paykit.batch tasks and nginx light threads, and get its result), or
-- another notice of the same verified payment (the session notice and the transaction
-- notice of one charge); payments are remembered through the instance's store. A delivery
-- refused or not verified is not remembered.
-- @tparam table|string req the request (`path` or `uri`, `query` raw string or decoded table, `body`)
-- @tparam[opt] table opts `keep = function(reference) -> keep | nil`: the `keep` the merchant
--   stored for that order; when given, the answer is bound to it as in @{Client:complete}
--   (its requestId, referenceId and pid must be that purchase's)
-- @treturn table result with `notification` (the notified fields, `signed`, the claimed
--   `reference_id`), `reference`, `session_id` and `duplicate`
-- @treturn table reply `{status=200, body=notification_reply, content_type="text/plain"}`
-- @return[2] nil
-- @return[2] a validation, config (no notify_path), signature (`malformed`, `bad_signature`,
--   `unknown_key`, `unsigned`, `session_mismatch`, `transaction_mismatch`,
--   `reference_mismatch`), provider (`in_progress`: the same notice is still being verified
--   where waiting is not possible) or verifyPayment error
-- @return[2] table reply to send (400, 401, or 503 when verifyPayment or the store failed)
function Client:notification(req, opts)
  return notice.handle(self, req, opts)
end

return M
