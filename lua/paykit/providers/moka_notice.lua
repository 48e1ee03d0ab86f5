--- paykit.providers.moka_notice: Moka's signed 3D result, its confirmation, and its notification.
--
-- The 3D result (the buyer's return and Moka's server-to-server POST alike) carries
-- hashValue = lower-hex SHA-256(upper(CodeForHash) .. "T" or "F"): @{verify} compares it in
-- constant time with both outcomes and answers the kit's signature codes (`unsigned`,
-- `malformed`, `bad_signature`, `paykit.kit.signature`) and Moka's own `reference_mismatch`
-- (the hash covers neither trxCode nor OtherTrxCode, so the order is always the kept one).
-- @{confirm} asks Moka (GetDealerPaymentTrxDetailList) before a result says "paid".
-- @{notification} is the kit's pipeline for Moka (decode a raw string or a table, verify,
-- dedupe per payment through the instance's store, reply), with one step of Moka's own: a
-- result that confirmation could not confirm is answered 503 "PENDING" and not remembered,
-- so Moka sends it again.
-- @module paykit.providers.moka_notice
-- @usage
--   local notice = require "paykit.providers.moka_notice"
--   notice.hash_3d("9FDFBDFC-42C5-417E-AA93-E4D9D5312AAC", true)
--   --> "cdb7869505bdaaac2f4c891fc9ed889885fd7a0c880127ab5d508883efa3ee83"
local errors = require "paykit.errors"
local money = require "paykit.money"
local gateway = require "paykit.gateway"
local notify = require "paykit.kit.notify"
local options = require "paykit.kit.options"
local signature = require "paykit.kit.signature"
local codes = require "paykit.providers.moka_codes"
local wire = require "paykit.providers.moka_wire"

local _M = {}

local V = errors.validation

local core_mod
local function core()
  if not core_mod then core_mod = require "paykit.core" end
  return core_mod
end

local function is_blank(s) return s == nil or s == "" end

--- The hashValue Moka sends back for a CodeForHash: success ("T") or failure ("F").
-- @tparam string code_for_hash
-- @tparam boolean success
-- @treturn string 64 lowercase hex digits
function _M.hash_3d(code_for_hash, success)
  return core().digest("sha256", tostring(code_for_hash):upper() .. (success and "T" or "F"), "hex")
end

--- The posted 3D result as a table of fields: the raw form-encoded POST body (a string), a
-- request table `{body=, query=}`, or the fields already decoded (what a web framework gives).
-- @param params
-- @treturn table the fields
-- @return[2] nil
-- @return[2] a validation error (`params`, or `body` for a bad form encoding)
function _M.posted(params)
  if type(params) == "string" then params = { body = params } end
  if type(params) ~= "table" then return nil, V("params", "required", "the posted 3D result fields are required") end
  if type(params.body) == "string" or type(params.query) == "string" then
    local map, err = gateway.form { body = params.body, query = params.query }
    if not map then return nil, err end
    return map
  end
  return params
end

--- The 3D result check (see `paykit.providers.moka`'s `Moka:verify_3d`).
-- @tparam table self the instance
-- @param params the posted result (see @{posted})
-- @tparam string code_for_hash
-- @tparam[opt] table keep
-- @treturn table result "paid", "authorized" or "failed"
-- @return[2] nil
-- @return[2] a validation or signature error
function _M.verify(self, params, code_for_hash, keep)
  local perr
  params, perr = _M.posted(params)
  if not params then return nil, perr end
  if type(code_for_hash) ~= "string" or code_for_hash == "" then
    return nil, V("code_for_hash", "required", "the CodeForHash stored when the payment started is required")
  end
  local f = self.fields
  local hv = gateway.field(params, f.hash)
  if hv == nil or hv == "" then
    self.log("warn", "moka.verify_3d: no hashValue")
    return nil, signature.error("unsigned", "the 3D result carries no hashValue: not signed by Moka")
  end
  hv = tostring(hv)
  if #hv ~= 64 or not hv:match("^%x+$") then
    self.log("warn", "moka.verify_3d: malformed hashValue")
    return nil, signature.error("malformed", "the 3D result's hashValue is not 64 hex digits")
  end
  hv = hv:lower()
  local ok_t = core().consteq(hv, _M.hash_3d(code_for_hash, true))
  local ok_f = core().consteq(hv, _M.hash_3d(code_for_hash, false))
  if not (ok_t or ok_f) then
    self.log("warn", "moka.verify_3d: hashValue matches neither outcome")
    return nil, signature.error("bad_signature",
      "the 3D result's hashValue matches neither outcome for this CodeForHash: forged, tampered or for another payment")
  end
  local trx = gateway.field(params, f.trx_code)
  local other = gateway.field(params, f.other_trx_code)
  if type(trx) ~= "string" or trx == "" then trx = nil end
  if type(other) ~= "string" or other == "" then other = nil end
  local r = { provider_reference = trx, posted_reference = other }
  if type(keep) == "table" then
    local kept = keep.reference or ""
    if other ~= nil and other ~= kept then
      self.log("warn", "moka.verify_3d: OtherTrxCode differs from the kept reference")
      -- Moka's own code: the kit's set has none for an unsigned field that contradicts the kept order
      return nil, errors.signature("reference_mismatch",
        "the 3D result names another OtherTrxCode than the payment it is checked for (the hash does not cover it): refused")
    end
    r.reference = kept ~= "" and kept or nil
    r.amount, r.currency = keep.amount, keep.currency
  end
  if ok_t and type(keep) == "table" and keep.pre_auth then
    r.status = "authorized"; r.code = "moka.authorized"; r.message = "Payment authorised (capture it later)"
  elseif ok_t then
    r.status = "paid"; r.code = "moka.paid"; r.message = "Payment approved"
  else
    local rc = gateway.field(params, f.result_code)
    if type(rc) ~= "string" then rc = nil end
    local code, message = codes.bank(rc)
    r.status = "failed"; r.code = code; r.message = message
    r.provider_code = rc; r.provider_message = gateway.field(params, f.result_message)
  end
  r.raw = params
  self.log("info", "moka.verify_3d " .. r.status)
  return wire.result(r)
end

-- Whether two decimal amounts (Moka's text, the kept text) are the same number of kurus.
local function same_amount(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then return false end
  local ma, mb = money.parse(a, "TRY"), money.parse(b, "TRY")
  return ma ~= nil and ma == mb
end

--- Moka's own answer about a result that the hash says is paid: status() of the kept
-- reference must be paid (or authorized), for the kept amount and currency, with the posted
-- trxCode (when there is one) as its VirtualPosOrderId.
-- @tparam table self the instance
-- @tparam table r the verified result
-- @tparam table keep the kept table
-- @treturn table r (perhaps now "pending", code "moka.unconfirmed")
-- @return[2] nil
-- @return[2] the status call's error, or a signature error `order_id_mismatch`
function _M.confirm(self, r, keep)
  local function unconfirmed(why)
    self.log("warn", "moka.confirm: " .. why)
    r.status = "pending"; r.code = "moka.unconfirmed"
    r.message = "the return was signed as paid but " .. why
    return r
  end
  if is_blank(keep.reference) then
    return unconfirmed("it cannot be confirmed: the payment was started without a reference (OtherTrxCode)")
  end
  local st, err = self:status(keep.reference)
  if not st then return nil, err end
  -- a sale must be paid; a pre-authorisation authorized (or already captured: paid)
  if st.status ~= "paid" and not (st.status == "authorized" and keep.pre_auth) then
    return unconfirmed("Moka reports " .. st.status)
  end
  if keep.amount and not same_amount(st.amount, keep.amount) then
    return unconfirmed("Moka reports another amount than the one kept")
  end
  local function tl(c) return c == "TRY" and "TL" or c end
  if keep.currency and tl(st.currency) ~= tl(keep.currency) then
    return unconfirmed("Moka reports another currency than the one kept")
  end
  if r.provider_reference and st.provider_reference ~= r.provider_reference then
    self.log("warn", "moka.confirm: trxCode differs from Moka's VirtualPosOrderId")
    return nil, errors.signature("order_id_mismatch",
      "the 3D result's trxCode (unsigned) is not the VirtualPosOrderId Moka reports for this payment: refused")
  end
  r.status = st.status
  r.provider_reference = st.provider_reference
  r.payment_id = st.payment_id
  r.confirmed = true
  return r
end

--- The store key of a payment's notifications: one per 3D payment (its CodeForHash, digested
-- so that the store never holds it), whatever the outcome and the unsigned fields say.
-- @tparam string code_for_hash
-- @treturn string
function _M.payment_key(code_for_hash)
  return "moka:" .. core().digest("sha256", "moka-payment|" .. code_for_hash:upper(), "hex")
end

-- The replies (a fresh table each time: the caller may change what it sends).
local REPLY = setmetatable({}, { __index = function(_, k)
  local r = ({ ok = { 200, "OK" }, invalid = { 400, "INVALID" }, unknown = { 500, "UNKNOWN" },
    pending = { 503, "PENDING" }, later = { 503, "TRY LATER" } })[k]
  return gateway.reply(r[1], r[2])
end })

-- The fields of notification's opts.
local NOTIFICATION_OPTS = { code_for_hash = true, keep = true, lookup = true, confirm = true }

--- Moka's notification (see `paykit.providers.moka`'s `Moka:notification`).
-- @tparam table self the instance
-- @param req the raw body (a string), `{method=, query=, body=, headers=}`, or the decoded fields
-- @tparam[opt] table opts `code_for_hash`, `keep`, `lookup`, `confirm`
-- @treturn table result
-- @treturn table reply
-- @return[2] nil
-- @return[2] err
-- @return[2] reply
function _M.notification(self, req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    return nil, V("opts", "invalid", "notification's opts must be a table"), REPLY.unknown
  end
  opts = opts or {}
  local _, oerr = options.fields(opts, NOTIFICATION_OPTS, "notification's opts")
  if oerr then return nil, oerr, REPLY.unknown end
  local r0, err = notify.request(req)
  local params
  if r0 then params, err = _M.posted(r0.fields or r0) end
  if not params then return nil, err, REPLY.invalid end
  local other = gateway.field(params, self.fields.other_trx_code)
  local trx = gateway.field(params, self.fields.trx_code)
  local keep = type(opts.keep) == "table" and opts.keep or nil
  local cfh = opts.code_for_hash
  if cfh == nil and keep then cfh = keep.code_for_hash end
  local lookup = opts.lookup or self.lookup
  if cfh == nil and lookup then
    local ok, v = pcall(lookup, other, trx)
    if not ok then self.log("error", "moka.notification lookup failed: " .. tostring(v))
    elseif type(v) == "table" then keep = v; cfh = v.code_for_hash
    else cfh = v end
  end
  if type(cfh) ~= "string" or cfh == "" then
    self.log("warn", "moka.notification: no CodeForHash for this payment")
    return nil, V("code_for_hash", "unknown_payment",
      "no CodeForHash is known for this notification's payment (give code_for_hash, keep or lookup)"), REPLY.unknown
  end
  local r
  r, err = _M.verify(self, params, cfh, keep)
  if not r then return nil, err, REPLY.invalid end
  if not keep then
    -- the CodeForHash was found (or given) for this OtherTrxCode, and the hash matched it
    r.reference = r.posted_reference
    keep = { reference = r.posted_reference }
  end
  local want = self.confirm
  if opts.confirm ~= nil then want = opts.confirm end
  if (r.status == "paid" or r.status == "authorized") and want then
    r, err = _M.confirm(self, r, keep)
    if not r then return nil, err, REPLY.unknown end
    if r.status == "pending" then
      -- not acknowledged and not remembered: Moka sends it again, and a later delivery that
      -- Moka confirms is not mistaken for a duplicate
      r.duplicate = false
      self.log("warn", "moka.notification unconfirmed: not acknowledged")
      return r, REPLY.pending
    end
  end
  local key = _M.payment_key(cfh)
  local added, why = self.store:add(key, r.status, self.dedupe_ttl or notify.DEFAULT_TTL)
  if added == nil then
    self.log("error", "moka.notification not recorded: " .. tostring(why))
    return nil, why, REPLY.later
  end
  r.duplicate = not added
  if not added then r.first_status = self.store:get(key) end
  self.log("info", "moka.notification " .. r.status .. (r.duplicate and " (duplicate)" or ""))
  return r, REPLY.ok
end

return _M
