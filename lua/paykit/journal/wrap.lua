--- paykit.journal.wrap: a provider instance with the payment journal in front of it.
--
-- `journal:wrap(gw, opts)` (or `require("paykit.journal.wrap").new(journal, gw, opts)`)
-- answers an object with the gateway's uniform calls; every other method is the gateway's own.
--
--  * `purchase(p)`: the reference (p.reference; a new UUID when none is given) names the
--    payment. The provider checks the input first: input it refuses (a field named in the
--    error) leaves the store untouched. Right before the first request leaves, the record is
--    written (the store's atomic add: one caller per reference, on every process) and marked
--    `sent`; only the caller that wrote it sends (fail closed: when the journal cannot be
--    written the answer is a `journal_unavailable` error and no request leaves). A provider
--    whose transport cannot be watched (no `gw.http`) has the record written before the call.
--    The record is moved to the outcome when the answer is in. A
--    purchase repeated with the same reference is never sent again: it answers the stored
--    result (`result.journal.replayed = true`; the current state in `result.journal.state`),
--    the stored error for an unknown or refused-by-provider outcome, or, while the first is
--    still in flight, a validation error `in_progress` (retryable). The same reference with
--    another amount or currency is refused (`reference_reused`).
--  * `complete(params[, keep])`: keep may be left out (or be the reference): it is read from
--    the record. `notification(req[, opts])`: Moka's CodeForHash comes from the record.
--    `status(reference)`: asks the provider with what the record knows (MoCoPay: the session,
--    and the purchase's keep, so that an answer about another purchase never pays this one).
--    Each moves the record to the outcome; `result.duplicate` is false for exactly one caller
--    (the one whose transition won), true for every repeat, on every worker and server.
--  * `opts.grant(record, token)`: called once per paid payment by whoever moved it to paid (or,
--    after a failed or interrupted grant, by the next caller or the sweeper), under a lease;
--    `result.journal.grant` says what happened ("granted", "already", "in_progress", ...).
--  * `sweep{older_than=, limit=}`: see `paykit.journal.sweep`.
-- @module paykit.journal.wrap
local core = require "paykit.core"
local errors = require "paykit.errors"
local money = require "paykit.money"
local states = require "paykit.journal.states"

local _M = {}

local function field(map, name)
  if type(map) ~= "table" then return nil end
  local v = map[name]
  if v == nil then
    local lower = name:lower()
    for k, x in pairs(map) do if type(k) == "string" and k:lower() == lower then v = x; break end end
  end
  if type(v) == "table" then v = v[1] end
  return v
end

local function query_field(params, name)
  if type(params) == "table" then
    local v = field(params, name)
    if v == nil and type(params.query) == "string" then return query_field(params.query, name) end
    return v
  end
  if type(params) ~= "string" then return nil end
  local q = params:match("%?(.*)$") or params
  local map = core.query_decode(q)
  return map and field(map, name)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The amount of a call as one text whatever way it was written: `key` ("27.5", "27.50") or
-- `key_minor` (2750) give "27.50". An amount paykit cannot read is kept as given (the
-- provider refuses it before sending, and the record is then refused), minor units marked so.
local function amount_of(p, key, currency)
  local ok, minor, text = pcall(money.read, p, key, currency)
  if ok and minor then return text end
  if p[key] ~= nil then return p[key] end
  if p[key .. "_minor"] ~= nil then return tostring(p[key .. "_minor"]) .. " minor" end
  return nil
end

-- What the journal needs to know of each provider's calls. A provider not listed gets DEFAULT.
local DEFAULT = {
  reference = function(p) return p.reference end,
  set_reference = function(p, ref) p.reference = ref end,
  money = function(p) return amount_of(p, "amount", p.currency), p.currency end,
  keep_reference = function(keep) return keep.reference end,
  from_params = function() return nil end,
  status_query = function(rec) return rec.reference end,
  status_keep = function() return nil end, -- what status() is given besides the query
}

local ADAPTERS = {
  moka = {
    from_params = function(params) return query_field(params, "OtherTrxCode") end,
  },
  mocopay = {
    money = function() return nil, nil end, -- the product (pid) carries the price
    keep_reference = function(keep) return keep.reference_id end,
    from_params = function(params) return query_field(params, "referenceId") end,
    -- verifyPayment needs the session (learned from the return or a notification), or the buyer;
    -- and the purchase's keep to bind the answer to: without it (the process died before the
    -- answer) the buyer's newest session may be another order's, so nothing is asked
    status_query = function(rec)
      if type(rec.keep) ~= "table" then return nil end
      if rec.session_id then return { sessionId = rec.session_id } end
      if rec.user_id then return { userId = rec.user_id } end
      return nil
    end,
    -- the answer is bound to the purchase (an answer naming another purchase is refused, one
    -- naming none is "pending"): a session alone says nothing about which order it paid
    status_keep = function(rec)
      if type(rec.keep) ~= "table" then return nil end
      local keep = copy(rec.keep)
      if rec.session_id then keep.session_id = rec.session_id end
      return keep
    end,
  },
  zippy = {
    reference = function(p) return p.reference or p.ext_transaction_id end,
    set_reference = function(p, ref) if p.ext_transaction_id == nil then p.reference = ref end end,
    money = function(p)
      local key = (p.price ~= nil or p.price_minor ~= nil) and "price" or "amount"
      return amount_of(p, key, p.currency), p.currency
    end,
    -- the id Zippy knows is the reference and a nonce ("order-7~" .. 12 hex digits); the
    -- journal knows the payment by the reference (keep.reference)
    keep_reference = function(keep) return keep.reference or keep.ext_transaction_id end,
    base_reference = function(id) return type(id) == "string" and id:match("^(.+)~" .. ("%x"):rep(12) .. "$") or nil end,
    kept_id = function(keep) return type(keep) == "table" and keep.ext_transaction_id or nil end,
    status_query = function() return nil end, -- no status call: notices, or expiry
  },
}
_M.ADAPTERS = ADAPTERS

local function adapter_for(name, custom)
  local a = {}
  for k, v in pairs(DEFAULT) do a[k] = v end
  for k, v in pairs(ADAPTERS[name] or {}) do a[k] = v end
  for k, v in pairs(custom or {}) do a[k] = v end
  return a
end

local STATE_OF = { redirect = "redirect", paid = "paid", failed = "failed", pending = "pending", authorized = "authorized" }

local W = {}
W.__index = function(self, k)
  local m = W[k]
  if m ~= nil then return m end
  local inner = rawget(self, "gw")[k]
  if type(inner) == "function" then
    return function(s, ...) if s == self then s = rawget(self, "gw") end; return inner(s, ...) end
  end
  return inner
end

--- The journaled gateway.
-- @tparam table journal a `paykit.journal`
-- @tparam table gw a provider instance (its `provider` field names it)
-- @tparam[opt] table opts `grant` (function(record, token) -> truthy when fulfilled),
--   `provider` (the name, when gw has no `provider` field), `adapter` (overrides of the
--   provider's adapter: reference, set_reference, money, keep_reference, from_params, base_reference, kept_id,
--   status_query, status_keep), `expire_after` (seconds; default the journal's)
-- @treturn table the wrapped gateway
function _M.new(journal, gw, opts)
  opts = opts or {}
  local name = opts.provider or gw.provider
  if type(name) ~= "string" then error("paykit.journal.wrap: the gateway has no provider name (give opts.provider)", 2) end
  if opts.grant ~= nil and type(opts.grant) ~= "function" then error("paykit.journal.wrap: grant must be a function", 2) end
  return setmetatable({ journal = journal, gw = gw, provider = name, grant = opts.grant,
                        adapter = adapter_for(name, opts.adapter),
                        expire_after = opts.expire_after or journal.expire_after }, W)
end

-- What a record keeps of a result: everything but the raw answer.
local function stored_result(r)
  local s = copy(r)
  s.raw, s.journal, s.duplicate = nil, nil, nil
  return s
end

local function stored_error(e)
  if type(e) ~= "table" then return { kind = "transport", code = "other", message = tostring(e) } end
  return { kind = e.kind, code = e.code, message = e.message, field = e.field, status = e.status,
           retryable = e.retryable, provider_code = e.provider_code }
end

local function error_of(s, note)
  local e = errors.new { kind = s.kind or "provider", code = s.code, message = (s.message or "") .. (note or ""),
                         field = s.field, status = s.status, provider_code = s.provider_code }
  return e
end

-- The state an error of the charging call leaves: nothing sent, a definite no, or unknown.
local function state_of_error(err, marked)
  if not marked then return "refused" end
  if type(err) ~= "table" then return "unknown" end
  if err.kind == "validation" or err.kind == "config" then return "refused" end
  if err.retryable and (err.kind == "transport") then return "refused" end -- the connection never made
  if err.kind == "provider" and err.status and err.status < 500 then return "failed" end
  return "unknown"
end

local function amount_text(v) if v == nil then return nil end return tostring(v) end

-- The gateway seen through a transport that runs on_first right before the first request
-- leaves (after the provider's own checks of the input). When on_first says no, that request
-- and every later one of this call answer its error: nothing leaves.
local function proxied(gw, on_first)
  local http = gw.http
  if type(http) ~= "table" or type(http.request) ~= "function" then return nil end
  local done, refusal = false, nil
  local proxy = setmetatable({
    request = function(_, req)
      if not done then
        done = true
        local ok, err = on_first()
        if not ok then refusal = err end
      end
      if refusal then return nil, refusal end
      return http:request(req)
    end,
  }, { __index = http })
  -- a view of the instance (paykit.kit's guarded methods accept it): its own http, the rest gw's
  local base = getmetatable(gw)
  return setmetatable({ http = proxy }, { __index = gw, __paykit_view = true,
                                          __kit = type(base) == "table" and rawget(base, "__kit") or nil })
end

-- A currency code as one text: case and Moka's TL for TRY do not make another currency.
local function same_currency(a, b)
  local function canon(c) c = tostring(c):upper(); return c == "TL" and "TRY" or c end
  return canon(a) == canon(b)
end

function W:replay(cur, q)
  local amount, currency = self.adapter.money(q)
  amount = amount_text(amount)
  if (amount and cur.amount and amount ~= cur.amount)
    or (currency and cur.currency and not same_currency(currency, cur.currency)) then
    return nil, errors.validation("reference", "reference_reused", "reference " .. cur.reference
      .. " was used for another payment (" .. tostring(cur.amount) .. " " .. tostring(cur.currency) .. ")")
  end
  local st = cur.state
  if st == "created" or st == "sent" then
    local e = errors.validation("reference", "in_progress", "a purchase with reference " .. cur.reference
      .. " is being sent by another caller; ask again in a moment (it is never sent twice)")
    e.retryable = true
    return nil, e
  end
  if cur.result then
    local r = copy(cur.result)
    r.journal = { state = st, replayed = true }
    return r
  end
  if cur.error then
    local note = st == "unknown" and " (outcome unknown: the journal resolves it with the provider's status)" or ""
    return nil, error_of(cur.error, note)
  end
  return nil, errors.new { kind = "provider", code = "journal_" .. st, message = "payment " .. cur.reference .. " is " .. st }
end

--- Starts a payment, once per reference (see the module description).
function W:purchase(p)
  local gw, j, a = self.gw, self.journal, self.adapter
  if type(p) ~= "table" then return gw:purchase(p) end
  local q = copy(p)
  local ref = a.reference(q)
  if ref == nil or ref == "" then ref = core.uuid4(); a.set_reference(q, ref) end
  if type(ref) ~= "string" then return nil, errors.validation("reference", "invalid", "reference must be a string") end
  local amount, currency = a.money(q)
  amount = amount_text(amount)
  local marked = false -- this call's record says sent: a request may leave
  local stop           -- { r, err }: what this call answers when no request may leave
  -- The record's creation, once per reference (the store's atomic add), and its mark `sent`;
  -- run right before the first request leaves. Nil when this call may send, else `stop`.
  local function begin()
    local rec, why, cur = j:create { provider = self.provider, reference = ref, amount = amount,
                                     currency = currency, user_id = q.user_id }
    if rec == nil then return { nil, why } end
    if rec == false then
      if cur == nil or cur.state ~= "refused" then return { self:replay(cur or { reference = ref, state = "sent" }, q) } end
      -- nothing was sent before: this attempt takes the record over (refused -> sent, once)
      local ok, err = j.store:index_add(j:index(self.provider), ref, j.clock())
      if not ok then return { nil, states.unavailable(err, "written") } end
      ok, err = j:move(self.provider, ref, "sent", { amount = amount, currency = currency, error = false })
      if ok == nil then return { nil, states.unavailable(err, "marked as sent") } end
      if not ok then return { self:replay(j:get(self.provider, ref) or cur, q) } end
      marked = true
      return nil
    end
    local ok, err = j:move(self.provider, ref, "sent")
    if ok then marked = true; return nil end
    local e = states.unavailable(ok == nil and err or nil, "marked as sent")
    j:move(self.provider, ref, "refused", { error = stored_error(e) })
    return { nil, e }
  end
  local target = proxied(gw, function()
    stop = begin()
    if stop == nil then return true end
    -- the provider's call ends with this error; purchase answers `stop` whatever it makes of it
    return nil, stop[2] or errors.validation("reference", "replayed", "reference " .. ref
      .. " is answered from the journal (never sent twice)")
  end)
  if not target then
    -- no transport to watch: the record is written and says sent before the call (it may send)
    stop = begin()
    if stop then return stop[1], stop[2] end
    target = gw
  end
  -- a provider that raises after the record says sent leaves it unknown (the sweeper asks);
  -- raising before any request leaves nothing written. Then the error goes on up.
  local called, r, err = pcall(gw.purchase, target, q)
  if not called then
    if marked then j:move(self.provider, ref, "unknown", { error = stored_error(r) }) end
    error(r, 0)
  end
  if stop then return stop[1], stop[2] end
  if not marked then
    -- no request left: input the provider refused leaves the store untouched
    if r == nil then return nil, err end
    -- an answer made without a request (nothing sent) is still journaled, once per reference
    stop = begin()
    if stop then return stop[1], stop[2] end
  end
  local to, patch
  if r then
    to = STATE_OF[r.status] or "unknown"
    patch = { result = stored_result(r), keep = r.keep, provider_reference = r.provider_reference }
  else
    to = state_of_error(err, marked)
    patch = { error = stored_error(err) }
  end
  local ok, after = j:move(self.provider, ref, to, patch)
  if r then
    r.journal = { state = ok and to or nil, replayed = false }
    if ok == nil then r.journal.error = after end
    if ok and to == "paid" then r.journal.grant = self:fulfil(ref) end
  end
  return r, err
end

--- Runs the grant hook for a paid payment (claim, grant, confirm); see `paykit.journal:fulfil`.
function W:fulfil(reference)
  if not self.grant then return "no_grant" end
  local outcome = self.journal:fulfil(self.provider, reference, self.grant)
  return outcome
end

--- Moves the record of result's payment to its outcome; sets result.duplicate and .journal.
function W:record(r, ref, patch)
  ref = ref or r.reference
  local to = STATE_OF[r.status]
  r.journal = r.journal or {}
  if type(ref) ~= "string" or not to or to == "redirect" then return r end
  local ok, rec, why = self.journal:move(self.provider, ref, to, patch)
  if ok == nil then r.journal.error = rec; return r end
  if why == "missing" then r.journal.state = nil; return r end
  r.duplicate = not ok
  r.journal.state = rec and rec.state
  if rec and rec.state == "paid" and rec.grant ~= "done" then r.journal.grant = self:fulfil(ref)
  elseif rec and rec.grant == "done" then r.journal.grant = "already" end
  return r
end

-- The session a result teaches the record, for later status calls: only one the answer bound
-- to the purchase (a return is unsigned: its sessionId may be any paid session).
local function learned(r)
  if r.bound == false then return nil end
  local n = type(r.notification) == "table" and r.notification or {}
  local sid = r.session_id or n.session_id
  return sid and { session_id = sid } or nil
end

--- Completes a payment when the buyer comes back; keep may be left out (read from the record).
function W:complete(params, keep, opts)
  local ref
  if type(keep) == "table" then ref = self.adapter.keep_reference(keep)
  elseif type(keep) == "string" then ref, keep = keep, nil
  else ref = self.adapter.from_params(params) end
  if keep == nil and ref then
    local rec, err = self.journal:get(self.provider, ref)
    if rec == nil and err then return nil, err end
    keep = rec and rec.keep
  end
  local r, err = self.gw:complete(params, keep, opts)
  if not r then return nil, err end
  return self:record(r, ref, learned(r))
end

-- The journal's reference of a result naming the provider's id: for Zippy, whose notices
-- name the reference and its nonce, the reference when its record kept that very id (a
-- notice of another payment that shares the reference is not this one's); nil, err when the
-- record cannot be read.
function W:reference_of(r)
  local id = r.reference
  local base = self.adapter.base_reference and self.adapter.base_reference(id)
  if not base then return id end
  local rec, err = self.journal:get(self.provider, base)
  if rec == nil and err then return nil, err end
  if rec and self.adapter.kept_id(rec.keep) == id then return base end
  return id
end

--- Handles a notification; Moka's CodeForHash is looked up in the journal.
function W:notification(req, opts)
  local o = copy(opts or {})
  if self.provider == "moka" and o.code_for_hash == nil and o.lookup == nil then
    -- the whole keep, not only its CodeForHash: the result is then the purchase's (its
    -- amount, and "authorized" for a pre-authorisation, which must never be granted as paid)
    o.lookup = function(other)
      local rec = type(other) == "string" and other ~= "" and self.journal:get("moka", other)
      return rec and type(rec.keep) == "table" and rec.keep.code_for_hash and rec.keep or nil
    end
  elseif self.provider == "mocopay" and o.keep == nil then
    -- the purchase's keep: verifyPayment's answer must then be that purchase's (its product too)
    o.keep = function(reference)
      local rec = self.journal:get("mocopay", reference)
      return rec and type(rec.keep) == "table" and rec.keep or nil
    end
  end
  local r, err, reply = self.gw:notification(req, o)
  if not r then return nil, err, reply end
  local ref, rerr = self:reference_of(r)
  if ref == nil then r.journal = { error = rerr }; return r, err end
  return self:record(r, ref, learned(r)), err
end

--- The status of a payment by its reference (what the provider needs is read from the record).
function W:status(ref)
  if type(ref) ~= "string" then
    local r, err = self.gw:status(ref)
    if not r then return nil, err end
    return self:record(r, r.reference)
  end
  local rec, gerr = self.journal:get(self.provider, ref)
  if rec == nil and gerr then return nil, gerr end
  local q = self.adapter.status_query(rec or { reference = ref })
  if q == nil then
    return nil, errors.new { kind = "provider", code = "unsupported", provider = self.provider, op = self.provider .. ".status",
      message = "no status call can find payment " .. ref .. " with what the journal knows ("
        .. (self.provider == "zippy" and "Zippy has no status call" or "no provider id learned yet")
        .. "): its outcome comes from the return or a notification" }
  end
  local r, err = self.gw:status(q, self.adapter.status_keep(rec or { reference = ref }))
  if not r then return nil, err end
  return self:record(r, ref, learned(r))
end

--- The record of a payment (see `paykit.journal:get`).
function W:record_of(reference) return self.journal:get(self.provider, reference) end

--- Finds stuck payments and resolves them (see `paykit.journal.sweep`).
function W:sweep(opts) return require("paykit.journal.sweep").run(self, opts) end

return _M
