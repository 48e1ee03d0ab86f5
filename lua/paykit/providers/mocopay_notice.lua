--- MoCoPay's notifications: decode, verify, confirm, dedupe per payment, reply.
--
-- The steps of `paykit.kit.notify`, with what MoCoPay needs on top: the signature is
-- MoCoPay's own scheme (`paykit.providers.mocopay_sign`, not an HMAC) with the kit's codes
-- (`paykit.kit.signature`: `unsigned`, `malformed`, `unknown_key`, `bad_signature`); a notice,
-- signed or not, is only a hint until verifyPayment confirms the session, and verifyPayment
-- yields: so the notice is claimed in the instance's `seen` memory before it (concurrent
-- deliveries of one notice wait for the first and get its result; a delivery that fails
-- releases its claim), and the payment (the session's verified state: the session notice and
-- the transaction notice of one charge are one payment) is then added through the instance's
-- store (`store:add`, the kit's store interface, with `dedupe_ttl`).
-- @module paykit.providers.mocopay_notice
local core = require "paykit.core"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local notify = require "paykit.kit.notify"
local options = require "paykit.kit.options"
local signature = require "paykit.kit.signature"
local request = require "paykit.providers.mocopay_request"

local _M = {}

local find = string.find
local same, forged, bind, check_keep = request.same, request.forged, request.bind, request.check_keep

-- A signature error with the kit's code, naming the signature parameter.
local function sig_error(code, message)
  local e = signature.error(code, message)
  e.field = "signature"
  return e
end

--- The notification request in one shape: a raw string is its parameters (query string or
-- form body), a table of decoded parameters its fields, a request table as it is.
-- @param req
-- @treturn table `{method=, path=, uri=, query=, body=, headers=}`
-- @return[2] nil
-- @return[2] a validation error (field `req`)
function _M.request(req)
  if type(req) == "table" and (req.path ~= nil or req.uri ~= nil) then return req end
  local r, err = notify.request(req)
  if not r then return nil, err end
  if r.fields ~= nil then r = { method = r.method, query = r.fields } end
  return r
end

--- The parameter maps to try for the signature (body merged over query): RFC 3986 decoding
-- ("+" is "+") and, when there is a "+", form decoding ("+" is a space) too.
-- @tparam table req the request
-- @treturn ?table a list of parameter maps (nil: not validly encoded)
function _M.params(req)
  local query = req.query
  if query == nil and type(req.uri) == "string" then query = req.uri:match("%?(.*)$") end
  if type(query) == "table" then return { query } end
  local sources = { query or "" }
  if type(req.body) == "string" and req.body ~= "" then sources[2] = req.body end
  local raw = {}
  for _, src in ipairs(sources) do
    if type(src) ~= "string" then return nil end
    local m = core.query_decode(src)
    if not m then return nil end
    for k, v in pairs(m) do raw[k] = v end
  end
  if not find(table.concat(sources, "&"), "+", 1, true) then return { raw } end
  local form = gateway.form { query = sources[1], body = sources[2] }
  if not form then return nil end
  return { raw, form }
end

-- Whether a name or value of the parameters holds a control character (NUL included).
local function has_control(p)
  for k, v in pairs(p) do
    if type(k) == "string" and find(k, "%c") then return true end
    if type(v) == "string" and find(v, "%c") then return true end
    if type(v) == "table" then
      for _, x in ipairs(v) do if type(x) == "string" and find(x, "%c") then return true end end
    end
  end
  return false
end

-- Checks the signature when there is one. Returns the parameters it covers (or the first
-- candidates when unsigned), signed | nil, err, reply.
local function verify(self, req, candidates)
  local p = candidates[1]
  local sig = gateway.field(p, "signature")
  if sig == nil then
    if self.require_signature then
      return nil, sig_error("unsigned", "the MoCoPay notification carries no signature"), gateway.reply(401, "not signed")
    end
    return p, false
  end
  -- MoCoPay's signature is MD5(secret .. message), which a holder of one signed message can
  -- extend without the secret; the extension carries MD5's padding (NUL bytes) into a value.
  -- No genuine notification holds a control character: refused before the signature counts.
  if has_control(p) then
    self.log("warn", "mocopay notification with a control character in a signed parameter refused")
    return nil, sig_error("malformed", "the MoCoPay notification's parameters hold a control character"),
      gateway.reply(401, "bad signature")
  end
  local path = req.path or (type(req.uri) == "string" and req.uri:match("^[^?]*")) or self.notify_path
  if not path then
    return nil, errors.config("notify_path", "required",
      "the notification's path is needed to check its signature: pass req.path or set notify_url"), gateway.reply(400, "bad request")
  end
  local key = tostring(sig):match("^([^:]+):.")
  if not key then
    return nil, sig_error("malformed", "the MoCoPay notification's signature is not {api_key}:{signature}"),
      gateway.reply(401, "bad signature")
  end
  for _, cand in ipairs(candidates) do
    local ck, cg = tostring(gateway.field(cand, "signature")):match("^([^:]+):(.+)$")
    if ck and self.check(ck, path, cand, cg) then return cand, true end
  end
  self.log("warn", "mocopay notification with a bad signature refused")
  return nil, sig_error(core.consteq(key, self.api_key) and "bad_signature" or "unknown_key",
    "the MoCoPay notification's signature does not verify"), gateway.reply(401, "bad signature")
end

-- The notified ids, each checked. Returns {session_id, transaction_id, reference} | nil, err.
local function ids(p)
  local f = function(k) local v = gateway.field(p, k); return v ~= "" and v or nil end
  local session_id, transaction_id = f("sessionId"), f("transactionId")
  if not session_id and not transaction_id then
    return nil, errors.validation("sessionId", "required", "the notification names no sessionId or transactionId")
  end
  for name, v in pairs { sessionId = session_id, transactionId = transaction_id } do
    if type(v) ~= "string" or #v > 255 or find(v, "%c") then
      return nil, errors.validation(name, "invalid", name .. " must be 1-255 characters without control characters")
    end
  end
  local ref = f("referenceId")
  if ref ~= nil and type(ref) ~= "string" then ref = nil end
  if ref and (#ref > 255 or find(ref, "%c")) then
    return nil, errors.validation("referenceId", "invalid", "referenceId must be 1-255 characters without control characters")
  end
  return { session_id = session_id, transaction_id = transaction_id, reference = ref, f = f }
end

-- Claims the notice (waiting for a concurrent delivery of it). Returns true | nil, result|err, reply.
local function claim(self, notice, reply)
  local claimed, state, first = self.seen:claim(notice)
  local tries = 0
  while not claimed do
    if state == "pending" then state, first = self.seen:wait(notice, self.duplicate_wait) end
    if state == "done" and first then
      local r = {}
      for k, val in pairs(first) do r[k] = val end
      r.duplicate = true
      return nil, gateway.result(r), reply
    end
    tries = tries + 1
    if state == "done" or state == "pending" or tries > 3 then
      return nil, nil, errors.provider { code = "in_progress", provider = "mocopay", op = "notification", retryable = true,
        message = "the same MoCoPay notification is being processed" }
    end
    claimed, state, first = self.seen:claim(notice) -- released by a delivery that failed: ours now
  end
  return true
end

-- The fields of notification's opts.
local NOTIFICATION_OPTS = { keep = true }

--- Handles a notification (`Client:notification` in `paykit.providers.mocopay`).
-- @tparam table self the instance
-- @param req the request, its raw parameters (a string) or its decoded parameters
-- @tparam[opt] table opts `keep = function(reference) -> keep | nil`
-- @treturn table result
-- @treturn table reply
-- @return[2] nil
-- @return[2] err
-- @return[2] reply
function _M.handle(self, req, opts)
  local bad = gateway.reply(400, "bad request")
  local r0, rerr = _M.request(req)
  if not r0 then return nil, rerr, bad end
  req = r0
  if opts ~= nil and (type(opts) ~= "table" or (opts.keep ~= nil and type(opts.keep) ~= "function")) then
    return nil, errors.validation("opts", "invalid", "notification options must be a table {keep = function(reference) -> keep}"), bad
  end
  if opts ~= nil then
    local _, oerr = options.fields(opts, NOTIFICATION_OPTS, "notification's opts")
    if oerr then return nil, oerr, bad end
  end
  local candidates = _M.params(req)
  if not candidates then return nil, errors.validation("query", "invalid_query", "notification parameters are not validly encoded"), bad end
  local p, signed, vreply = verify(self, req, candidates)
  if not p then return nil, signed, vreply end
  local n, nerr = ids(p)
  if not n then return nil, nerr, bad end
  local f = n.f
  local reply = gateway.reply(200, self.notification_reply)
  -- This notice (signed or not: an unsigned copy must not stand for the signed one) is
  -- claimed before verifyPayment yields, so that concurrent deliveries agree on the first.
  -- (hashed: the memory holds a fixed-size key whatever the notice's fields weigh)
  local notice = "notice\0" .. core.digest("sha256", table.concat({ signed and "signed" or "unsigned",
    n.session_id or "", n.transaction_id or "", tostring(f("status") or ""), tostring(f("series") or ""),
    tostring(f("chargedAmount") or ""), tostring(f("amount") or ""), n.reference or "" }, "\0"), "hex")
  local mine, repeated, busy = claim(self, notice, reply)
  if not mine then
    if repeated then return repeated, reply end
    return nil, busy, gateway.reply(503, "try again")
  end
  local function refuse(err, rep)
    self.seen:release(notice)
    return nil, err, rep
  end
  local done, r, err = pcall(self.verify_payment, self,
    n.session_id and { sessionId = n.session_id } or { transactionId = n.transaction_id })
  if not done then
    self.seen:release(notice)
    error(r, 0)
  end
  if not r then
    if err.kind == "signature" then return refuse(err, bad) end
    return refuse(err, gateway.reply(503, "try again"))
  end
  local info = r.payment
  if n.transaction_id and n.session_id then
    local held = false
    for _, t in ipairs(info.transactions) do if same(t, n.transaction_id) then held = true end end
    if not held then
      return refuse(forged("transactionId", "transaction_mismatch", "the notified transaction is not in the session verifyPayment answered"), bad)
    end
  end
  -- The order it names: the signed referenceId, or the one verifyPayment answers; never an
  -- unsigned claim. Where both are known they must agree.
  if n.reference and info.reference_id ~= nil and not same(n.reference, info.reference_id) then
    self.log("warn", "mocopay notification for session " .. info.session_id .. " names another purchase")
    return refuse(forged("referenceId", "reference_mismatch", "the notification's referenceId is not the session's"), bad)
  end
  if signed then r.reference = n.reference or info.reference_id else r.reference = info.reference_id end
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
    local bound, berr = bind(r, keep, signed)
    if not bound then
      self.log("warn", "mocopay notification for session " .. info.session_id .. " refused: " .. tostring(berr.code))
      return refuse(berr, bad)
    end
  end
  local fields = {}
  for k, val in pairs(p) do if k ~= "signature" then fields[k] = val end end
  r.notification = { session_id = n.session_id, transaction_id = n.transaction_id, status = f("status"),
                     session_type = f("sessionType"), series = f("series"), reference_id = n.reference,
                     signed = signed, params = fields }
  r.raw = { notification = fields, verify = r.raw }
  -- The payment is the session's verified state: a session notice and the transaction
  -- notice of the same charge verify alike and are one payment (no yield since the answer
  -- in the in-process store: the first to get here records it).
  local payment = "mocopay:payment:" .. core.digest("sha256", table.concat({ info.session_id, tostring(info.status),
    tostring(info.series), tostring(#info.transactions), tostring(info.total_charged_amount),
    tostring(info.total_failed_amount) }, "\0"), "hex")
  local added, why = self.store:add(payment, r.status, self.dedupe_ttl or notify.DEFAULT_TTL)
  if added == nil then
    self.log("error", "mocopay notification not recorded: " .. tostring(why))
    return refuse(errors.is(why) and why or errors.provider { code = "store_unavailable", provider = "mocopay",
      op = "notification", retryable = true, message = "the notification store did not answer: " .. tostring(why) },
      gateway.reply(503, "try again"))
  end
  r.duplicate = not added
  self.seen:settle(notice, r)
  self.log("info", "mocopay notification session=" .. tostring(info.session_id) .. " status=" .. tostring(r.code)
    .. (r.duplicate and " (duplicate)" or ""))
  return r, reply
end

return _M
