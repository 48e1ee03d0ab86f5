--- Zippy's signed notices.
-- `qs .. "&sig=" .. id .. ":" .. hex(HMAC-SHA256(keys[id], qs))`,
-- where qs is the notice ({ext_transaction_id=..[, error=CODE]}) percent-encoded.
--
-- Verification works on the raw bytes as received: split at the last "&sig=", then
-- `paykit.kit.signature.verify` (the id must name a configured key, the HMAC is recomputed
-- over the bytes before "&sig=" and compared in constant time); only then is anything decoded.
-- @module paykit.providers.zippy_notice
-- @usage
--   local notice = require "paykit.providers.zippy_notice"
--   local fields, err = notice.verify(raw, {[0] = "old secret", [1] = "new secret"})
--   local signed = notice.sign({{"ext_transaction_id", "order-1"}}, 1, "new secret")
local core = require "paykit.core"
local errors = require "paykit.errors"
local signature = require "paykit.kit.signature"
local gateway = require "paykit.gateway"

local _M = {}

local SIG_MARK = "&sig="

-- The position of the last "&sig=" in s, or nil.
local function last_sig(s)
  local found, from = nil, 1
  while true do
    local i = s:find(SIG_MARK, from, true)
    if not i then return found end
    found, from = i, i + 1
  end
end

local RFC3986 = { space = "%20" }

--- The notice's query string: pairs in order, RFC 3986 percent-encoding (space as %20).
-- @tparam table fields pairs `{{name, value}, ...}` (values: strings, numbers or booleans)
-- @treturn string the query string
-- @raise as `paykit.core.form_encode`, for a value of another type
function _M.encode(fields)
  return core.form_encode(fields, RFC3986)
end

--- Signs a notice: sign(fields, key_id, secret) -> signed notice string.
-- @tparam table fields pairs `{{"ext_transaction_id", id}, {"error", code}}`
-- @tparam number key_id the key's id
-- @tparam string secret the key
-- @treturn string the signed notice
function _M.sign(fields, key_id, secret)
  local qs = _M.encode(fields)
  return qs .. SIG_MARK .. tostring(key_id) .. ":" .. signature.sign { message = qs, key = secret }
end

--- Verifies a signed notice.
-- The error is a signature error with `paykit.kit.signature`'s codes: "unsigned", "malformed",
-- "unknown_key", "bad_signature".
-- @tparam string raw the signed notice as received
-- @tparam table keys `{[id] = secret, ...}`
-- @treturn table fields: `ext_transaction_id`, `error` (absent when paid)
-- @treturn table pairs in order
-- @treturn number the id of the key that signed it
-- @return[2] nil
-- @return[2] a signature error
function _M.verify(raw, keys)
  if type(raw) ~= "string" or raw == "" then
    return nil, signature.error("unsigned", "the Zippy notice is empty")
  end
  local cut = last_sig(raw)
  if not cut then
    return nil, signature.error("unsigned", "the Zippy notice carries no &sig= signature")
  end
  local id, sig = raw:sub(cut + #SIG_MARK):match("^(%d+):(%x+)$")
  if not id or #id > 9 then
    return nil, signature.error("malformed", "the Zippy notice's sig is not <key id>:<64 hex digits>")
  end
  local qs = raw:sub(1, cut - 1)
  local key_id, err = signature.verify { message = qs, signature = sig, keys = keys, key_id = tonumber(id),
    provider = "Zippy" }
  if not key_id then return nil, err end
  local map, list = core.query_decode(qs)
  if not map then
    return nil, signature.error("malformed", "the Zippy notice is signed but not valid percent-encoding")
  end
  if type(map.ext_transaction_id) ~= "string" then
    return nil, signature.error("malformed", "the Zippy notice has no single ext_transaction_id")
  end
  if map.error ~= nil and type(map.error) ~= "string" then
    return nil, signature.error("malformed", "the Zippy notice has several error fields")
  end
  return map, list, key_id
end

--- The signed notice inside a browser redirect's query string.
-- The merchant's success_url may carry its own parameters before the notice, and Zippy's
-- reference server joins them with "?" (it always appends "?" .. notice), so both
-- `order=7&ext_transaction_id=...` and `order=7?ext_transaction_id=...` occur. The notice is
-- the part from the last `ext_transaction_id=` that starts the query or follows "&" or "?",
-- before the last "&sig=": inside a notice every "&", "?" and "=" of a value is
-- percent-encoded, so that is where the signed bytes begin. Nothing is decoded here; the
-- signature is checked over exactly these bytes by @{verify}.
-- @tparam string query the raw query string (a leading "?" is dropped)
-- @treturn ?string the notice (nil when query is not a string)
function _M.from_query(query)
  if type(query) ~= "string" then return nil end
  query = query:gsub("^%?", "")
  local cut = last_sig(query) or (#query + 1)
  local start, from = nil, 1
  while true do
    local i = query:find("ext_transaction_id=", from, true)
    if not i or i >= cut then break end
    local before = query:sub(i - 1, i - 1)
    if i == 1 or before == "&" or before == "?" then start = i end
    from = i + 1
  end
  if start then return query:sub(start) end
  return query
end

--- The signed notice inside a callback POST body (signed_notice=URLENCODED_NOTICE).
-- Returns the notice or nil, err.
-- @tparam string body the raw form-encoded body
-- @treturn string the notice
-- @return[2] nil
-- @return[2] a signature error (`unsigned` or `malformed`)
function _M.from_body(body)
  if type(body) ~= "string" or body == "" then
    return nil, errors.signature("unsigned", "the Zippy callback has no body")
  end
  local map = core.form_decode(body)
  if not map then
    return nil, errors.signature("malformed", "the Zippy callback body is not form-encoded")
  end
  local v = map.signed_notice
  if v == nil then
    return nil, errors.signature("unsigned", "the Zippy callback has no signed_notice field")
  end
  if type(v) ~= "string" then
    return nil, errors.signature("malformed", "the Zippy callback has several signed_notice fields")
  end
  return v
end

--- A signature error with the field it came from (set only when it names none).
-- @tparam ?table err an error (nil passes through)
-- @tparam string field e.g. "query", "signed_notice"
-- @return err
function _M.at(err, field)
  if err and err.field == nil then err.field = field end
  return err
end
local at = _M.at

--- The result of a verified notice (`paykit.kit.result`): "paid", or "failed" with its code.
-- @tparam table n `{ext_transaction_id=, error=}`
-- @tparam[opt] table keep purchase's keep (`uuid`, `amount`, `currency`)
-- @treturn table the result
function _M.result(n, keep)
  keep = keep or {}
  local failed = n.error ~= nil
  return require("paykit.kit").result {
    status = failed and "failed" or "paid",
    provider = "zippy",
    reference = n.ext_transaction_id,
    provider_reference = keep.uuid,
    amount = keep.amount, currency = keep.currency,
    code = n.error,
    message = failed and ("Zippy reports the payment failed: " .. n.error) or "paid",
    raw = { ext_transaction_id = n.ext_transaction_id, error = n.error },
  }
end

--- The callback's pipeline for `paykit.kit.notify`: the signed notice is in the body
-- (signed_notice=...), in decoded parameters, or in the query; one transaction is one payment
-- (a second notice of it, another outcome too, is a duplicate).
-- @tparam table limits `MAX_CALLBACK` (bytes of a callback body), as `paykit.providers.zippy_fields`
-- @treturn table the `notice` declaration
function _M.pipeline(limits)
  local max = limits.MAX_CALLBACK
  return {
    replies = { ok = gateway.reply(200, "OK"), rejected = gateway.reply(400, "REJECTED"),
                unavailable = gateway.reply(503, "TRY LATER") },
    decode = function(_, req)
      if type(req.body) == "string" and #req.body > max then
        return nil, at(errors.signature("malformed", "the Zippy callback body is longer than " .. max .. " bytes"), "body")
      elseif type(req.body) == "string" and req.body ~= "" then
        local raw, err = _M.from_body(req.body)
        return raw, at(err, "signed_notice")
      elseif type(req.fields) == "table" then
        local v = req.fields.signed_notice
        if type(v) == "string" then return v end
        return nil, at(errors.signature(v == nil and "unsigned" or "malformed",
          "the Zippy callback's parameters carry no single signed_notice"), "signed_notice")
      elseif type(req.query) == "string" and req.query ~= "" and #req.query <= max then
        return _M.from_query(req.query)
      end
      return nil, at(errors.signature("unsigned", "the Zippy callback carries no signed notice"), "body")
    end,
    verify = function(self, raw)
      if raw:find("%c") then
        return nil, at(errors.signature("malformed", "the Zippy notice holds control characters"), "signed_notice")
      end
      local n, err = self:verify_notice(raw)
      return n, at(err, "signed_notice")
    end,
    payment = function(n) return n.ext_transaction_id end,
    result = function(_, n) return _M.result(n) end,
  }
end

return _M
