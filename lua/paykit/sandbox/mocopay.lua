-- The MoCoPay simulator: initPayment and verifyPayment behind MoCoPay's request signature,
-- a checkout page on which the buyer "sends the SMS", the 302 return to callbackUrl and
-- signed GET notifications to notifyUrl. Base URL: http://127.0.0.1:PORT/mocopay
--
-- Credentials (exported as M.credentials and M.keys):
--   api_key "sandbox-app",  api_secret "sandbox-secret",       digest MD5   (M.credentials)
--   api_key "sandbox-sha1", api_secret "sandbox-sha1-secret",  digest SHA-1 (M.credentials_sha1)
-- The signature is taken from the `Signature: ApiKey {key}:{sig}` header or the `signature`
-- parameter; it is checked over the full request path as received (e.g.
-- "/mocopay/v1/payment/initPayment") with values raw or percent-encoded (both are accepted,
-- MoCoPay's choice being unconfirmed). Missing, malformed, unknown key or wrong signature:
-- HTTP 401 {"errorCode": "Unauthorized", "errorMessage": ...}. Invalid parameters: HTTP 400
-- {"errorCode": "InvalidParameter", "errorMessage": ..., "field": name}.
--
-- Products (pid):
--   "SUB..."      subscription: 10 EUR a charge, recurring every 7 days; an admin call charges
--                 again: POST /mocopay/_sandbox/charge?sessionId=..[&result=fail]
--   "FAIL..."     one-time whose operator billing fails after the SMS (PaymentFailed)
--   "UNKNOWN..."  no such product: HTTP 400 errorCode "UnknownProduct"
--   "ERROR500"    HTTP 500 from initPayment
--   anything else one-time: 199 EUR
--
-- Checkout page GET /mocopay/checkout?trn=..: button id="send-sms" (the buyer sent the SMS:
-- billed), id="cancel", id="expire"; a session not finished within M.TTL seconds (900; POST
-- /mocopay/_sandbox/ttl?seconds=N for new sessions) expires on its own. Then HTTP 302 to
-- callbackUrl with sid, sessionId, requestId, referenceId, status, where status is
--   PaymentComplete | PaymentCancelled | PaymentExpired | PaymentFailed
-- and session statuses in verifyPayment: Initialized, Authorized, Cancelled, Expired, Failed.
-- Without a callbackUrl the page shows the outcome (id="status").
--
-- Notifications: a session notification (GET notifyUrl?sessionId, referenceId, sessionType
-- (onetime|subscription), status, series, userId, phone, mcc, mnc, serviceCode, pid, lang,
-- currencyCode, chargedAmount, signature) at every status change and charge, and a transaction
-- notification (transactionId, sessionId, referenceId, status Charged|Failed, amount,
-- currencyCode, pid, serviceCode, signature) per charge. `signature` is {api_key}:{sig} of the
-- key that started the session, over the notify URL's path and its parameters (raw values).
-- Any 2xx answer is taken as delivered (3 attempts).
--
-- verifyPayment answers the documented shape plus the session's `requestId` and `referenceId`
-- (UNCONFIRMED that MoCoPay echoes them; the client binds a session to a purchase with them,
-- see the client's module notes; POST /mocopay/_sandbox/echo {"on": false} leaves them out);
-- sandbox meanings: series = number of successful
-- charges, chargedAmount = amount of the latest successful charge of the current period (0
-- after a failed one), expiresIn = seconds until the checkout time limit (before payment), the
-- end of the 24 h access window (one-time) or of the 7-day period (subscription); negative once
-- passed. Amounts are integers in the currency's units, currencyCode "EUR".
--
-- For tests without a browser: POST /mocopay/_sandbox/act {"trn": .., "action": "send-sms" |
-- "cancel" | "expire"} -> 200 {"Location": callback URL or null, "status": .., "sessionId": ..}.
-- For forgery tests: POST /mocopay/_sandbox/verify_answer (see admin_verify_answer) makes
-- verifyPayment answer for another session or with fields changed.
local cjson = require "cjson.safe"
local core = require "paykit.core"

local M = {}

M.credentials = { api_key = "sandbox-app", api_secret = "sandbox-secret", digest = "md5" }
M.credentials_sha1 = { api_key = "sandbox-sha1", api_secret = "sandbox-sha1-secret", digest = "sha1" }
M.keys = {
  [M.credentials.api_key] = M.credentials,
  [M.credentials_sha1.api_key] = M.credentials_sha1,
}
M.TTL = 900
M.ONETIME_PRICE, M.SUB_PRICE, M.CURRENCY = 199, 10, "EUR"
M.SUB_PERIOD, M.ACCESS_WINDOW = 7 * 86400, 86400
M.SHORT_CODE = "8585"

---------------------------------------------------------------------------- signing (pure)

local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- path .. "?" .. sorted name=value pairs without `signature` (see mocopay-notes.md).
-- `params` is a map (array values repeat the name); `encode` percent-encodes names and values.
function M.canonical(path, params, encode)
  local list = {}
  for k, v in pairs(params) do
    if k ~= "signature" then
      local vals = type(v) == "table" and v or { v }
      for _, x in ipairs(vals) do
        x = tostring(x)
        list[#list + 1] = encode and { core.pct_encode(k), core.pct_encode(x) } or { k, x }
      end
    end
  end
  table.sort(list, function(a, b)
    if a[1] ~= b[1] then return bytes_lt(a[1], b[1]) end
    return bytes_lt(a[2], b[2])
  end)
  for i, kv in ipairs(list) do list[i] = kv[1] .. "=" .. kv[2] end
  return path .. "?" .. table.concat(list, "&")
end

function M.sign(cred, path, params, encode)
  return core.digest(cred.digest, cred.api_secret .. M.canonical(path, params, encode), "base64")
end

---------------------------------------------------------------------------- parameters

-- initPayment's parameters, checked here on the simulator's own terms (never with the
-- client's code): what a provider would refuse with InvalidParameter.
local function ipv4(v)
  local parts = { v:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return false end
  for _, x in ipairs(parts) do
    if #x > 3 or (#x > 1 and x:sub(1, 1) == "0") or tonumber(x) > 255 then return false end
  end
  return true
end

local function hex_groups(run)
  if run == "" then return 0 end
  local n = 0
  for g in (run .. ":"):gmatch("([^:]*):") do
    if not g:match("^%x%x?%x?%x?$") then return nil end
    n = n + 1
  end
  return n
end

local function ipv6(v)
  if v:find("[^%x:%.]") then return false end
  local head, v4 = v:match("^(.*:)(%d+%.[%d%.]*)$")
  if head then
    if not ipv4(v4) then return false end
    v = head .. "0:0"
  end
  if v:find(".", 1, true) or v:find(":::", 1, true) then return false end
  local left, right = v:match("^(.-)::(.*)$")
  if not left then return hex_groups(v) == 8 end
  if right:find("::", 1, true) then return false end
  local a, b = hex_groups(left), hex_groups(right)
  return a ~= nil and b ~= nil and a + b <= 7
end

local function http_url(v)
  if v:find("[%c%s]") then return false end
  local authority = v:match("^[hH][tT][tT][pP][sS]?://([^/?#]*)")
  if not authority or authority == "" or authority:find("@", 1, true) then return false end
  local host, port = authority:match("^(%[[^%]]+%])(.*)$")
  if host then
    if not ipv6(host:sub(2, -2)) then return false end
  else
    host, port = authority:match("^([^:]+)(.*)$")
    if not host or not host:match("^[%w%-]+[%w%.%-]*$") or host:find("..", 1, true) then return false end
  end
  if port ~= "" then
    local n = port:match("^:(%d+)$")
    if not n or tonumber(n) < 1 or tonumber(n) > 65535 then return false end
  end
  return true
end

-- ISO 3166-1 leaves these alpha-2 codes to users: never a country.
local function country(v)
  if not v:match("^%u%u$") then return false end
  return not (v == "AA" or v == "ZZ" or v:match("^Q[M-Z]$") or v:match("^X%u$"))
end

local function plain(max) return function(v) return #v >= 1 and #v <= max and not v:find("%c") end end

local INIT = {
  pid = plain(64), userId = plain(255), referenceId = plain(255),
  mcc = function(v) return v:match("^%d%d%d$") ~= nil end,
  mnc = function(v) return v:match("^%d%d%d?$") ~= nil end,
  country = country,
  lang = function(v) return v:match("^%l%l$") ~= nil end,
  clientIp = function(v) return ipv4(v) or ipv6(v) end,
  phone = function(v) return #v <= 21 and v:match("^%+?%d%d%d+$") ~= nil end,
  callbackUrl = http_url, notifyUrl = http_url, imageUrl = http_url,
}

-- nil, or the name of the first invalid parameter and why.
local function invalid_init(params)
  if params.pid == nil then return "pid", "pid is required" end
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local rule = INIT[k]
    if not rule then return k, "initPayment has no parameter " .. k end
    if not rule(params[k]) then return k, k .. " is not valid" end
  end
  return nil
end

---------------------------------------------------------------------------- state

local util -- set by handle()

local function state()
  local s = util.store("mocopay")
  if not s.sessions then
    s.sessions = {}      -- trn -> session
    s.by_sid = {}        -- sessionId -> session
    s.by_user = {}       -- api_key .. "\0" .. userId -> latest session
    s.txns = {}          -- transactionId -> {session=, status=, amount=}
    s.ttl = M.TTL
    s.forged = {}        -- sessionId -> {as=, set=} (POST /_sandbox/verify_answer)
    s.echo = true        -- verifyPayment answers requestId and referenceId (POST /_sandbox/echo)
  end
  return s
end

local function now()
  ngx.update_time()
  return ngx.now()
end

local function stamp(t) return t and os.date("!%Y-%m-%d %H:%M:%S", math.floor(t)) or cjson.null end

local function product(pid)
  if pid:sub(1, 3) == "SUB" then
    return { type = "subscription", price = M.SUB_PRICE, service = "PS-SANDBOX-SUB", recurrent = true }
  end
  return { type = "onetime", price = M.ONETIME_PRICE, service = "PS-SANDBOX-001", recurrent = false,
           fails = pid:sub(1, 4) == "FAIL" }
end

---------------------------------------------------------------------------- replies

local function fail(status, code, message, field)
  return util.json(status, { errorCode = code, errorMessage = message, field = field })
end

local function unauthorized(message) return fail(401, "Unauthorized", message) end

-- The credential of a correctly signed request, or nil after answering 401.
local function authenticate()
  local q = util.query()
  local header = ngx.req.get_headers()["signature"]
  if type(header) == "table" then header = header[1] end
  local value
  if header then
    value = header:match("^ApiKey%s+(%S+)$")
    if not value then unauthorized("the Signature header must be \"ApiKey {key}:{signature}\""); return nil end
  else
    value = q.signature
    if type(value) == "table" then unauthorized("more than one signature parameter"); return nil end
    if not value then unauthorized("the request is not signed"); return nil end
  end
  local key, sig = value:match("^([^:]+):(.+)$")
  if not key then unauthorized("the signature must be {api_key}:{signature}"); return nil end
  local cred = M.keys[key]
  if not cred then unauthorized("unknown api key"); return nil end
  local path = ngx.var.uri
  for _, encode in ipairs { false, true } do
    if core.consteq(M.sign(cred, path, q, encode), sig) then return cred, q end
  end
  unauthorized("bad signature")
  return nil
end

---------------------------------------------------------------------------- notifications

local function encode_pairs(list)
  local out = {}
  for i, kv in ipairs(list) do out[i] = core.pct_encode(kv[1]) .. "=" .. core.pct_encode(tostring(kv[2])) end
  return table.concat(out, "&")
end

-- GET notifyUrl with `list` (pairs, nil values skipped) plus the signature parameter.
local function notify(s, list)
  local url = s.params.notifyUrl
  if not url then return end
  local base, existing = url:match("^([^?#]*)%??([^#]*)")
  local path = base:match("^https?://[^/]+(/.*)$") or "/"
  local map = (existing ~= "" and core.query_decode(existing)) or {}
  local pairs_ = {}
  for _, kv in ipairs(list) do
    if kv[2] ~= nil then
      pairs_[#pairs_ + 1] = kv
      map[kv[1]] = tostring(kv[2])
    end
  end
  local cred = M.keys[s.api_key]
  local sig = cred.api_key .. ":" .. M.sign(cred, path, map)
  local query = encode_pairs(pairs_) .. "&signature=" .. core.pct_encode(sig)
  if existing ~= "" then query = existing .. "&" .. query end
  util.notify { url = base .. "?" .. query, method = "GET", provider = "mocopay", attempts = 3, delay = 0.3 }
end

local function notify_session(s)
  local p = s.params
  notify(s, {
    { "sessionId", s.session_id }, { "referenceId", p.referenceId }, { "sessionType", s.product.type },
    { "status", s.status }, { "series", s.series }, { "userId", p.userId }, { "phone", p.phone },
    { "mcc", p.mcc }, { "mnc", p.mnc }, { "serviceCode", s.product.service }, { "pid", p.pid },
    { "lang", p.lang }, { "currencyCode", M.CURRENCY }, { "chargedAmount", s.charged },
  })
end

local function notify_transaction(s, txn)
  notify(s, {
    { "transactionId", txn.id }, { "sessionId", s.session_id }, { "referenceId", s.params.referenceId },
    { "status", txn.status }, { "amount", txn.amount }, { "currencyCode", M.CURRENCY },
    { "pid", s.params.pid }, { "serviceCode", s.product.service },
  })
end

---------------------------------------------------------------------------- the payment session

local function charge(s, ok)
  local st = state()
  local t = now()
  local txn = { id = core.random_hex(16), session = s, status = ok and "Charged" or "Failed", amount = s.product.price }
  st.txns[txn.id] = txn
  s.transactions[#s.transactions + 1] = txn.id
  if ok then
    s.series = s.series + 1
    s.charged, s.last_charged = s.product.price, s.product.price
    s.total_charged = s.total_charged + s.product.price
    s.time_last_success = t
    s.period_end = t + (s.product.type == "subscription" and M.SUB_PERIOD or M.ACCESS_WINDOW)
  else
    s.charged = 0
    s.failed, s.last_failed = s.product.price, s.product.price
    s.total_failed = s.total_failed + s.product.price
  end
  return txn
end

local FINAL = { send = "PaymentComplete", cancel = "PaymentCancelled", expire = "PaymentExpired", fail = "PaymentFailed" }

-- Applies a buyer action to an open session (a finished session keeps its outcome).
local function act(s, action)
  if s.status ~= "Initialized" then return end
  local txn
  if action == "send-sms" then
    if s.product.fails then
      s.status, s.callback_status = "Failed", FINAL.fail
      txn = charge(s, false)
    else
      s.status, s.callback_status = "Authorized", FINAL.send
      s.time_authorized = now()
      txn = charge(s, true)
    end
  elseif action == "cancel" then
    s.status, s.callback_status = "Cancelled", FINAL.cancel
  elseif action == "expire" then
    s.status, s.callback_status = "Expired", FINAL.expire
  else
    return
  end
  notify_session(s)
  if txn then notify_transaction(s, txn) end
end

-- The session for trn, expired first when its time limit has passed.
local function load(trn)
  local s = type(trn) == "string" and state().sessions[trn] or nil
  if s and s.status == "Initialized" and now() > s.expires_at then act(s, "expire") end
  return s
end

local function callback_location(s)
  local url = s.params.callbackUrl
  if not url or not s.callback_status then return nil end
  local q = { { "sid", s.session_id }, { "sessionId", s.session_id }, { "requestId", s.request_id } }
  if s.params.referenceId then q[#q + 1] = { "referenceId", s.params.referenceId } end
  q[#q + 1] = { "status", s.callback_status }
  return url .. (url:find("?", 1, true) and "&" or "?") .. encode_pairs(q)
end

local function verify_body(s)
  local p, t = s.params, now()
  local until_t
  if s.status == "Authorized" and s.period_end then until_t = s.period_end else until_t = s.expires_at end
  local echo = state().echo
  return {
    sessionId = s.session_id, requestId = echo and s.request_id or nil,
    referenceId = echo and (p.referenceId or cjson.null) or nil,
    serviceCode = s.product.service, pid = p.pid, type = s.product.type,
    endUser = { userId = p.userId or cjson.null, phone = p.phone or cjson.null, mcc = p.mcc or cjson.null,
                mnc = p.mnc or cjson.null },
    lang = p.lang or cjson.null, series = s.series, status = s.status,
    chargedAmount = s.charged, failedAmount = s.failed, lastChargedAmount = s.last_charged,
    lastFailedAmount = s.last_failed, totalChargedAmount = s.total_charged, totalFailedAmount = s.total_failed,
    currencyCode = M.CURRENCY, recurrent = s.product.recurrent, expiresIn = math.floor(until_t - t),
    timeInit = stamp(s.time_init), timeAuthorized = stamp(s.time_authorized),
    timeLastSuccessfullPayment = stamp(s.time_last_success),
    transactions = s.transactions,
  }
end

-- The answer for session s: its own state, or what POST /_sandbox/verify_answer set for it
-- (another session's state, fields replaced or removed): a misbehaving or compromised
-- provider, for the client's forgery specs.
local function send_verify(s)
  local body = verify_body(s)
  local forged = state().forged[s.session_id]
  if forged then
    if forged.as then
      local other = state().by_sid[forged.as]
      if other then body = verify_body(other) end
    end
    for k, v in pairs(forged.set or {}) do
      if v == cjson.null then body[k] = nil else body[k] = v end
    end
  end
  local text = cjson.encode(body)
  text = text:gsub('"transactions":{}', '"transactions":[]')
  return util.send(200, text, "application/json")
end

---------------------------------------------------------------------------- API

local function init_payment()
  local cred, q = authenticate()
  if not cred then return end
  local params = {}
  for k, v in pairs(q) do
    if k ~= "signature" then
      if type(v) == "table" then return fail(400, "InvalidParameter", k .. " is repeated", k) end
      params[k] = v
    end
  end
  local bad, why = invalid_init(params)
  if bad then return fail(400, "InvalidParameter", why, bad) end
  if params.pid:sub(1, 7) == "UNKNOWN" then return fail(400, "UnknownProduct", "no product " .. params.pid, "pid") end
  if params.pid == "ERROR500" then return fail(500, "InternalError", "the payment server failed") end
  local st, t = state(), now()
  local s = {
    trn = core.random_hex(8), request_id = core.random_hex(16), session_id = core.random_hex(16),
    api_key = cred.api_key, params = params, product = product(params.pid), status = "Initialized",
    time_init = t, expires_at = t + st.ttl, series = 0, transactions = {},
    charged = 0, failed = 0, last_charged = 0, last_failed = 0, total_charged = 0, total_failed = 0,
  }
  st.sessions[s.trn], st.by_sid[s.session_id] = s, s
  if params.userId then st.by_user[cred.api_key .. "\0" .. params.userId] = s end
  return util.json(200, { requestId = s.request_id,
    redirectUrl = util.base_url() .. "/mocopay/checkout?trn=" .. s.trn .. "&exp=" .. math.floor(s.expires_at) })
end

local function verify_payment()
  if ngx.req.get_method() ~= "POST" then return fail(405, "MethodNotAllowed", "verifyPayment is a POST") end
  local cred, q = authenticate()
  if not cred then return end
  local given = {}
  for _, k in ipairs { "sessionId", "userId", "transactionId" } do
    if q[k] ~= nil then
      if type(q[k]) ~= "string" or q[k] == "" then return fail(400, "InvalidParameter", k .. " must be one value", k) end
      given[#given + 1] = k
    end
  end
  if #given ~= 1 then
    return fail(400, "InvalidParameter", "exactly one of sessionId, userId, transactionId is required", given[2] or "sessionId")
  end
  local st = state()
  local s
  if given[1] == "sessionId" then s = st.by_sid[q.sessionId]
  elseif given[1] == "userId" then s = st.by_user[cred.api_key .. "\0" .. q.userId]
  else local txn = st.txns[q.transactionId]; s = txn and txn.session end
  if not s or s.api_key ~= cred.api_key then return fail(404, "NotFound", "no such payment session") end
  load(s.trn)
  return send_verify(s)
end

---------------------------------------------------------------------------- checkout page

local function outcome_page(s)
  local loc = callback_location(s)
  if loc then return util.redirect(loc, 302) end
  return util.page("Payment " .. s.status:lower(), string.format(
    '<p>Session <code>%s</code>: <span id="status">%s</span></p>', util.escape_html(s.session_id),
    util.escape_html(s.callback_status or s.status)))
end

local function checkout_page(s)
  if s.status ~= "Initialized" then return outcome_page(s) end
  local p = s.params
  local what = s.product.type == "subscription"
    and string.format("a subscription: %d %s now and every 7 days", s.product.price, M.CURRENCY)
    or string.format("a one-time payment of %d %s", s.product.price, M.CURRENCY)
  local image = p.imageUrl and string.format('<p><img id="product-image" src="%s" alt="" height="64"></p>', util.escape_html(p.imageUrl)) or ""
  return util.page("Pay by mobile", table.concat {
    image,
    '<p>Product <b id="pid">', util.escape_html(p.pid), '</b>: ', util.escape_html(what), ', charged to your phone bill.</p>',
    '<p>Send an SMS with the text <code id="sms-text">PAY ', util.escape_html(s.trn:upper()),
    '</code> to <b id="short-code">', M.SHORT_CODE, '</b>. This page expires in <span id="expires-in">',
    math.floor(s.expires_at - now()), '</span> seconds.</p>',
    '<form method="post" action="/mocopay/checkout"><input type="hidden" name="trn" value="', util.escape_html(s.trn), '">',
    '<button id="send-sms" type="submit" name="action" value="send-sms">I have sent the SMS</button>',
    '<button id="cancel" type="submit" name="action" value="cancel">Cancel</button>',
    '<button id="expire" type="submit" name="action" value="expire">Let it expire</button></form>',
  })
end

local function checkout()
  if ngx.req.get_method() == "POST" then
    local form = util.form() or {}
    local s = load(form.trn)
    if not s then return util.page("Unknown payment", "<p>No such payment session.</p>", 404) end
    act(s, form.action)
    return outcome_page(s)
  end
  local s = load(util.query().trn)
  if not s then return util.page("Unknown payment", "<p>No such payment session.</p>", 404) end
  return checkout_page(s)
end

---------------------------------------------------------------------------- sandbox admin

local function admin_act()
  local body = util.json_body()
  if not body or type(body.trn) ~= "string" then return fail(400, "InvalidParameter", "trn is required", "trn") end
  local s = load(body.trn)
  if not s then return fail(404, "NotFound", "no such payment session") end
  if body.action ~= "send-sms" and body.action ~= "cancel" and body.action ~= "expire" then
    return fail(400, "InvalidParameter", "action must be send-sms, cancel or expire", "action")
  end
  act(s, body.action)
  return util.json(200, { Location = callback_location(s) or cjson.null, status = s.callback_status or s.status,
                          sessionId = s.session_id })
end

local function admin_charge()
  local q = util.query()
  local s = type(q.sessionId) == "string" and state().by_sid[q.sessionId] or nil
  if not s then return fail(404, "NotFound", "no such payment session") end
  if s.product.type ~= "subscription" or s.status ~= "Authorized" then
    return fail(409, "NotRecurring", "only an authorized subscription can be charged again")
  end
  local txn = charge(s, q.result ~= "fail")
  notify_session(s)
  notify_transaction(s, txn)
  return send_verify(s)
end

local function admin_ttl()
  local seconds = tonumber(util.query().seconds)
  if not seconds or seconds < 0 then return fail(400, "InvalidParameter", "seconds must be a number >= 0", "seconds") end
  state().ttl = seconds
  return util.json(200, { ttl = seconds })
end

---------------------------------------------------------------------------- dispatch

-- POST /_sandbox/verify_answer {"sessionId": X, "as": Y, "set": {field: value|null}}: from now
-- on verifyPayment for session X answers session Y's state (when `as` is given) with the
-- fields of `set` replaced (null: left out). {"sessionId": X} alone restores the true answer.
local function admin_verify_answer()
  local body = util.json_body()
  if not body or type(body.sessionId) ~= "string" then return fail(400, "InvalidParameter", "sessionId is required", "sessionId") end
  local st = state()
  if not st.by_sid[body.sessionId] then return fail(404, "NotFound", "no such payment session") end
  if body.as ~= nil and (type(body.as) ~= "string" or not st.by_sid[body.as]) then
    return fail(400, "InvalidParameter", "as must name a payment session", "as")
  end
  if body.set ~= nil and type(body.set) ~= "table" then return fail(400, "InvalidParameter", "set must be an object", "set") end
  if body.as == nil and body.set == nil then st.forged[body.sessionId] = nil
  else st.forged[body.sessionId] = { as = body.as, set = body.set } end
  return util.json(200, { sessionId = body.sessionId, forged = st.forged[body.sessionId] ~= nil })
end

-- POST /_sandbox/echo {"on": false}: verifyPayment leaves out requestId and referenceId (the
-- documented answer shape), {"on": true} puts them back.
local function admin_echo()
  local body = util.json_body()
  if not body or type(body.on) ~= "boolean" then return fail(400, "InvalidParameter", "on must be true or false", "on") end
  state().echo = body.on
  return util.json(200, { echo = body.on })
end

local ROUTES = {
  ["/v1/payment/initPayment"] = init_payment,
  ["/v1/payment/verifyPayment"] = verify_payment,
  ["/checkout"] = checkout,
}
local ADMIN = { ["/_sandbox/act"] = admin_act, ["/_sandbox/charge"] = admin_charge, ["/_sandbox/ttl"] = admin_ttl,
                ["/_sandbox/verify_answer"] = admin_verify_answer, ["/_sandbox/echo"] = admin_echo }

function M.handle(u)
  util = u
  local path = u.subpath("mocopay"):gsub("/+$", "")
  local route = ROUTES[path]
  if route then return route() end
  route = ADMIN[path]
  if route then
    if ngx.req.get_method() ~= "POST" then return fail(405, "MethodNotAllowed", "sandbox calls are POST") end
    return route()
  end
  return fail(404, "NotFound", "no such MoCoPay endpoint")
end

return M
