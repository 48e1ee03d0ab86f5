--- paykit.journal: a record per payment, in a shared store, written before anything is sent.
--
-- The journal is what lets many processes and machines agree on one payment: it is written
-- before the charging request leaves (fail closed: no record, no request), it moves forward
-- through the state table below with one atomic transition each (time-stamped), and it hands
-- out the right to fulfil a paid order once (a lease with a stable token).
--
-- States (`journal.STATES`) and the moves allowed (`journal.NEXT`):
--
--     created   the record exists; the request has certainly not been sent
--               -> sent, refused
--     sent      the request may have reached the provider (marked right before it leaves)
--               -> redirect, pending, authorized, paid, failed, unknown, refused
--     redirect  the provider answered: the buyer is on its page (result and keep stored)
--               -> pending, authorized, paid, failed, expired, redirect (learns ids)
--     pending   the provider knows the payment but has no outcome yet
--               -> authorized, paid, failed, expired, pending (learns ids)
--     unknown   sent, but no usable answer (timeout, connection lost after sending, 5xx)
--               -> redirect, pending, authorized, paid, failed, expired, unknown
--     authorized  money held (pre-authorisation) -> paid, failed
--     paid, failed  final
--     refused   nothing was sent (connection never made, or a record left in `created` by
--               a process that died; input the provider refuses writes no record at all):
--               the same reference may be purchased again
--               -> sent (a new attempt)
--     expired   no outcome within the provider's window (`expire_after`; Zippy has no status
--               call) -> paid, failed (a late signed notice still wins)
--
-- Every transition stamps `<state>_at` (milliseconds since the epoch) and `updated_at`.
-- Keys share one Redis Cluster slot per payment: `<prefix>:{<provider>:<reference>}:rec` and
-- `...:lease`; the open payments, and paid ones until their grant is confirmed, are indexed in
-- `<prefix>:open:<provider>` (by creation time).
--
-- Fulfilment: `claim(provider, reference)` takes a lease (`lease` seconds) on a paid record
-- whose grant is not done and answers a claim with `token`; `confirm(claim)` marks the grant
-- done. A process that dies between the two leaves the lease to expire; the next claim (a
-- repeated notification, a status check, the sweeper) runs the grant again WITH THE SAME
-- token (`<provider>:<reference>`), so the merchant's own grant can be idempotent on it.
-- @module paykit.journal
-- @usage
--   local journal = require "paykit.journal"
--   local j = journal.new { store = require("paykit.store").redis { host = "10.0.0.5" } }
--   local gw = j:wrap(paykit.moka{...}, { grant = function(rec, token) ... return true end })
--   -- or in one call: journal.wrap(paykit.moka{...}, { store = s, grant = ... })
local core = require "paykit.core"
local errors = require "paykit.errors"
local store_mod = require "paykit.store"
local cjson = require("cjson").new()

local _M = {}

-- The state table and the journal's error live in paykit.journal.states (below this module,
-- paykit.journal.wrap and paykit.journal.sweep); they are this module's fields too.
local states = require "paykit.journal.states"
local STATES, NEXT = states.STATES, states.NEXT
_M.STATES, _M.NEXT, _M.OPEN, _M.FINAL = STATES, NEXT, states.OPEN, states.FINAL

-- from-set for a move to `to`: every state allowed to go there
local FROM = {}
for _, to in ipairs(STATES) do
  FROM[to] = {}
  for from, nexts in pairs(NEXT) do if nexts[to] then FROM[to][from] = true end end
end

local MEMORY = getmetatable(store_mod.memory { capacity = 1 }) -- the memory store's metatable

local Journal = {}
Journal.__index = Journal
Journal.__tostring = function(self) return "paykit.journal(" .. tostring(self.store) .. ")" end

local function now_ms()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.now then
    ngx.update_time()
    return math.floor(ngx.now() * 1000)
  end
  return core.realtime_ms()
end

--- A journal on a store.
-- @tparam table opts `store` (a `paykit.store`; default a new memory store; a memory store
--   is set to `evict = false`: full, it refuses new payments rather than forget old ones), `prefix`
--   ("paykit"), `keep_for` (seconds a record is kept, 30 days), `lease` (seconds a grant claim
--   holds, 30), `expire_after` (seconds after which an open payment no status call can
--   resolve is `expired`, 86400), `clock` (milliseconds since the epoch), `owner` (this
--   process's name in leases; default random)
-- @treturn table the journal
-- @return[2] nil
-- @return[2] a config error
function _M.new(opts)
  opts = opts or {}
  local s = opts.store or store_mod.memory { evict = false }
  if not store_mod.is_store(s) then
    return nil, errors.config("store", "invalid", "store must implement the paykit.store interface")
  end
  -- a memory store never drops a record to make room: that payment would be charged again
  if getmetatable(s) == MEMORY then s.evict = false end
  return setmetatable({
    store = s, prefix = opts.prefix or "paykit", keep_for = opts.keep_for or 30 * 86400,
    lease = opts.lease or 30, expire_after = opts.expire_after or 86400, clock = opts.clock or now_ms,
    owner = opts.owner or ("p-" .. core.random_hex(8)),
  }, Journal)
end

--- A journal (from @{new}).
-- @type Journal

--- The store key of one of a payment's entries (all in one Cluster slot).
-- @tparam string provider the provider name
-- @tparam string reference the merchant's reference
-- @tparam string what "rec" (the record) or "lease" (the grant lease)
-- @treturn string `<prefix>:{<provider>:<reference>}:<what>`
function Journal:key(provider, reference, what)
  return self.prefix .. ":{" .. provider .. ":" .. reference .. "}:" .. what
end

--- The store name of a provider's index of open payments.
-- @tparam string provider the provider name
-- @treturn string `<prefix>:open:<provider>`
function Journal:index(provider) return self.prefix .. ":open:" .. provider end

--- @section end

--- The error of a journal that cannot be written or read: nothing was sent
-- (`paykit.journal.states.unavailable`).
-- @function unavailable
-- @tparam table err the store's error
-- @tparam string what "written", "read", "marked as sent"
-- @treturn table a paykit error, code `journal_unavailable`
local unavailable = states.unavailable
_M.unavailable = unavailable

--- A record from its JSON text.
-- @function decode
-- @tparam string text the record text
-- @treturn table|nil the record (nil for nil or malformed text)
local function decode(text)
  if text == nil then return nil end
  local ok, rec = pcall(cjson.decode, text)
  if ok and type(rec) == "table" then return rec end
  return nil
end
_M.decode = decode

--- A journal (from @{new}): the payment records.
-- @type Journal

--- The record of a payment.
-- @tparam string provider the provider name
-- @tparam string reference the merchant's reference
-- @treturn table|nil the record (nil when there is none)
-- @return[2] nil
-- @return[2] a store error
function Journal:get(provider, reference)
  local text, err = self.store:get(self:key(provider, reference, "rec"))
  if text == nil then return nil, err end
  return decode(text)
end

--- Writes the record of a new payment (state created), once per reference.
-- @tparam table rec the fields: `provider`, `reference` (required), `amount`, `currency`, ...
-- @treturn table the record written
-- @return[2] false
-- @return[2] "exists"
-- @return[2] the record already there
-- @return[3] nil
-- @return[3] a `journal_unavailable` error
function Journal:create(rec)
  local now = self.clock()
  rec.state, rec.v = "created", 1
  rec.created_at, rec.updated_at = now, now
  rec.grant = "none"
  rec.grant_token = rec.provider .. ":" .. rec.reference
  local ok, err = self.store:index_add(self:index(rec.provider), rec.reference, now)
  if not ok then return nil, unavailable(err, "written") end
  local key = self:key(rec.provider, rec.reference, "rec")
  ok, err = self.store:add(key, cjson.encode(rec), self.keep_for)
  if ok == nil then return nil, unavailable(err, "written") end
  if ok == false then
    local cur, gerr = self.store:get(key)
    if cur == nil and gerr then return nil, unavailable(gerr, "read") end
    return false, "exists", decode(cur)
  end
  return rec
end

--- Moves a payment's record to state `to` (when the table allows it), merging patch.
-- @treturn boolean true when it moved
-- @treturn table the record after (or as it is: false, "conflict" | "missing")
-- @return[2] nil
-- @return[2] a store error
function Journal:move(provider, reference, to, patch)
  local p = {}
  for k, v in pairs(patch or {}) do p[k] = v end
  local now = self.clock()
  p[to .. "_at"], p.updated_at = now, now
  local ok, why, cur = self.store:transition(self:key(provider, reference, "rec"), "state", FROM[to], to, p)
  if ok == nil then return nil, why end
  if ok then
    -- a paid payment stays indexed until its grant is confirmed: the sweeper finishes grants
    if _M.FINAL[to] and to ~= "paid" then self.store:index_remove(self:index(provider), reference) end
    return true, decode(why)
  end
  return false, why == "conflict" and decode(cur) or nil, why
end

--- Takes the grant lease of a paid payment.
-- @treturn table claim `{provider=, reference=, token=, owner=, record=}`
-- @return[2] false
-- @return[2] why: "granted" (already done), "in_progress" (another holds the lease),
--   "not_paid", "missing"
-- @return[3] nil
-- @return[3] a store error
function Journal:claim(provider, reference)
  local owner = self.owner .. "-" .. core.random_hex(4)
  local lease = self:key(provider, reference, "lease")
  local ok, err = self.store:lock(lease, owner, self.lease)
  if ok == nil then return nil, err end
  if not ok then return false, "in_progress" end
  local rec
  rec, err = self:get(provider, reference)
  local why = (rec == nil and (err and "error" or "missing")) or (rec.grant == "done" and "granted")
    or (rec.state ~= "paid" and "not_paid") or nil
  if why then
    self.store:unlock(lease, owner)
    if why == "error" then return nil, err end
    return false, why
  end
  return { provider = provider, reference = reference, token = rec.grant_token, owner = owner, record = rec }
end

--- Marks a claimed grant done and releases the lease.
-- @tparam table claim from @{claim}
-- @treturn boolean true (false, "granted" when it was already marked)
-- @return[2] nil
-- @return[2] a store error (the lease then expires by itself and the grant may run again)
function Journal:confirm(claim)
  local ok, why = self.store:transition(self:key(claim.provider, claim.reference, "rec"), "grant",
    { none = true }, "done", { granted_at = self.clock(), granted_by = claim.owner })
  if ok == nil then return nil, why end
  self.store:unlock(self:key(claim.provider, claim.reference, "lease"), claim.owner)
  if not ok then return false, "granted" end
  self.store:index_remove(self:index(claim.provider), claim.reference)
  return true
end

--- Releases a claim without marking it done (the grant failed: a later claim runs it again).
function Journal:release(claim)
  return self.store:unlock(self:key(claim.provider, claim.reference, "lease"), claim.owner)
end

--- Runs grant(record, token) once for a paid payment (claim, grant, confirm).
-- @tparam function grant the merchant's fulfilment: truthy when done; raising or answering
--   nil/false leaves the grant to run again
-- @treturn string "granted" (ran now), "already" (done before), "in_progress", "not_paid",
--   "missing", "grant_failed" or "error"
-- @return the grant's error, or the store error
function Journal:fulfil(provider, reference, grant)
  local c, why = self:claim(provider, reference)
  if c == nil then return "error", why end
  if c == false then return why == "granted" and "already" or why end
  local ok, done, gerr = pcall(grant, c.record, c.token)
  if not ok or not done then
    self:release(c)
    return "grant_failed", ok and gerr or done
  end
  local cok, cerr = self:confirm(c)
  if cok == nil then return "error", cerr end
  return "granted"
end

--- A gateway that journals every payment (see `paykit.journal.wrap`).
-- The journal remembers it (by provider) for @{Journal:sweep}.
-- @tparam table gw a provider instance
-- @tparam[opt] table opts the options of `paykit.journal.wrap`
-- @treturn table the journaled gateway
function Journal:wrap(gw, opts)
  local w = require("paykit.journal.wrap").new(self, gw, opts)
  self.wrapped = self.wrapped or {}
  self.wrapped[w.provider] = w
  return w
end

--- Sweeps the payments of every gateway wrapped by this journal (see `paykit.journal.sweep`).
-- @tparam[opt] table opts the options of `paykit.journal.sweep.run` (`older_than`, `limit`, ...)
-- @treturn table reports by provider name: `{moka = report, ...}` (a report is
--   `{error = err}` when that provider's sweep could not run)
function Journal:sweep(opts)
  local out = {}
  for name, w in pairs(self.wrapped or {}) do
    local report, err = w:sweep(opts)
    out[name] = report or { error = err }
  end
  return out
end

--- A journaled gateway in one call: `journal.wrap(gw, {store = s, grant = fn, ...})`.
-- @function wrap
-- @tparam table gw a provider instance
-- @tparam[opt] table opts the options of @{new} (`store`, `prefix`, `keep_for`, `lease`,
--   `expire_after`, `clock`, `owner`) and of `paykit.journal.wrap` (`grant`, `provider`,
--   `adapter`); or `journal` (an existing journal) instead of the first
-- @treturn table the journaled gateway
-- @return[2] nil
-- @return[2] a config error (a store that is not one)
function _M.wrap(gw, opts)
  opts = opts or {}
  local j = opts.journal
  if not j then
    local err
    j, err = _M.new { store = opts.store, prefix = opts.prefix, keep_for = opts.keep_for, lease = opts.lease,
                      expire_after = opts.expire_after, clock = opts.clock, owner = opts.owner }
    if not j then return nil, err end
  end
  return j:wrap(gw, { grant = opts.grant, provider = opts.provider, adapter = opts.adapter,
                      expire_after = opts.expire_after })
end

--- The journal's default clock: milliseconds since the epoch (ngx.now() inside nginx).
-- @function now_ms
-- @treturn number milliseconds
_M.now_ms = now_ms
return _M
