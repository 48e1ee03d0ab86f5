--- MoCoPay's requests: what is sent and how each part is checked before any network call
-- (initPayment's parameters, verifyPayment's one key, the buyer's return), and how an answer
-- is bound to the purchase the merchant kept.
--
-- The checks are `paykit.kit.checks` (one strictness for every provider); the ISO code sets
-- are `paykit.providers.mocopay_codes`. Module fields: `INIT_PARAMS` (initPayment parameter
-- names, in order), `PURCHASE` (purchase field -> initPayment parameter).
-- @module paykit.providers.mocopay_request
local core = require "paykit.core"
local errors = require "paykit.errors"
local checks = require "paykit.kit.checks"
local options = require "paykit.kit.options"
local codes = require "paykit.providers.mocopay_codes"

local _M = {}

local find = string.find

local function plain(max)
  return function(v) return #v >= 1 and #v <= max and not find(v, "%c") end
end

-- initPayment parameters and how each is checked.
-- The refusal of a field a call does not have, in the kit's words (code `unknown_field`).
local function unknown(k, known, what)
  local name = type(k) == "string" and k:sub(1, 64) or tostring(k)
  local near = options.closest(name, known)
  return errors.validation(name, "unknown_field", "unknown field " .. name .. " in " .. what ..
    (near and ("; did you mean " .. near .. "?") or ""))
end

local INIT_RULES = {
  pid = { plain(64), "must be a product id (1-64 characters, no control characters)" },
  mcc = { function(v) return v:match("^%d%d%d$") ~= nil end, "must be a 3-digit mobile country code" },
  mnc = { function(v) return v:match("^%d%d%d?$") ~= nil end, "must be a 2- or 3-digit mobile network code" },
  country = { function(v) return codes.COUNTRIES[v] == true end, "must be an ISO 3166-1 alpha-2 country code" },
  userId = { plain(255), "must be 1-255 characters without control characters" },
  clientIp = { checks.is_ip, "must be an IPv4 or IPv6 address" },
  phone = { function(v) return v:match("^%+?%d%d%d+$") ~= nil and #v <= 21 end,
            "must be a phone number: digits with an optional leading +, 3 to 20 digits" },
  lang = { function(v) return codes.LANGUAGES[v] == true end, "must be an ISO 639-1 language code" },
  referenceId = { plain(255), "must be 1-255 characters without control characters" },
  callbackUrl = { checks.is_http_url, "must be an absolute http(s) URL" },
  notifyUrl = { checks.is_http_url, "must be an absolute http(s) URL" },
  imageUrl = { checks.is_http_url, "must be an absolute http(s) URL" },
}
_M.INIT_PARAMS = { "pid", "mcc", "mnc", "country", "userId", "clientIp", "phone", "lang",
                   "referenceId", "callbackUrl", "notifyUrl", "imageUrl" }

--- Checks initPayment parameters (API names).
-- `names` maps an API name to the name the caller used (for the error's field).
-- @tparam table params `pid` (required), `mcc`, `mnc`, `country`, `userId`, `clientIp`, `phone`,
--   `lang`, `referenceId`, `callbackUrl`, `notifyUrl`, `imageUrl`: strings
-- @tparam[opt] table names API name to the caller's name, e.g. `{callbackUrl = "return_url"}`
-- @treturn boolean true
-- @return[2] nil
-- @return[2] a validation error: `unknown_field`, `required`, `invalid_type` or `invalid`
function _M.validate_init(params, names)
  names = names or {}
  if type(params) ~= "table" then return nil, errors.validation("params", "invalid", "initPayment parameters must be a table") end
  for k in pairs(params) do
    if k == "signature" then
      return nil, errors.validation("signature", "reserved", "the signature is made by paykit; do not pass one")
    end
    if not INIT_RULES[k] then
      return nil, unknown(k, INIT_RULES, "initPayment")
    end
  end
  for _, k in ipairs(_M.INIT_PARAMS) do
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

-- purchase field -> initPayment parameter
_M.PURCHASE = {
  pid = "pid", product = "pid", mcc = "mcc", mnc = "mnc", country = "country", user_id = "userId",
  client_ip = "clientIp", phone = "phone", lang = "lang", reference = "referenceId",
  return_url = "callbackUrl", callback_url = "callbackUrl", notify_url = "notifyUrl", image_url = "imageUrl",
}

--- The initPayment parameters of a purchase (every field checked; defaults filled in).
-- @tparam table self the instance (`callback_url`, `notify_url` defaults)
-- @param p the caller's purchase table
-- @treturn table params (API names; a generated referenceId when none is given)
-- @treturn table names API name -> the caller's field name
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.purchase_params(self, p)
  if type(p) ~= "table" then return nil, errors.validation("purchase", "invalid", "purchase expects a table") end
  local params, names = {}, {}
  for k, v in pairs(p) do
    local api = _M.PURCHASE[k]
    if not api then return nil, unknown(k, _M.PURCHASE, "purchase") end
    if params[api] ~= nil then return nil, errors.validation(tostring(k), "duplicate", tostring(k) .. " repeats " .. names[api]) end
    params[api], names[api] = v, k
  end
  params.callbackUrl = params.callbackUrl or self.callback_url
  params.notifyUrl = params.notifyUrl or self.notify_url
  if params.referenceId == nil then params.referenceId = core.random_hex(16) end
  local ok, err = _M.validate_init(params, names)
  if not ok then return nil, err end
  return params, names
end

local VERIFY_BY = { sessionId = "session_id", userId = "user_id", transactionId = "transaction_id" }
local VERIFY_LUA = { session_id = true, user_id = true, transaction_id = true }
local VERIFY_KNOWN = { sessionId = true, userId = true, transactionId = true, session_id = true, user_id = true,
                       transaction_id = true }

local VERIFY_ORDER = { "sessionId", "userId", "transactionId" }

--- verifyPayment's one key: exactly one of sessionId, userId, transactionId (API or Lua names).
-- @param by a table, or a string (a sessionId)
-- @treturn string the API name chosen
-- @treturn string its value
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.verify_key(by)
  if type(by) == "string" then -- a sessionId: the checks below, without a table
    if by == "" or #by > 255 or find(by, "%c") then
      return nil, errors.validation("sessionId", "invalid", "sessionId must be 1-255 characters without control characters")
    end
    return "sessionId", by
  end
  if type(by) ~= "table" then return nil, errors.validation("sessionId", "required", "verifyPayment needs sessionId, userId or transactionId") end
  local chosen, value, count = nil, nil, 0
  for i = 1, #VERIFY_ORDER do
    local api = VERIFY_ORDER[i]
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
    if not VERIFY_BY[k] and not VERIFY_LUA[k] then
      return nil, unknown(k, VERIFY_KNOWN, "verifyPayment")
    end
  end
  if count == 0 then return nil, errors.validation("sessionId", "required", "verifyPayment needs one of sessionId, userId, transactionId") end
  if count > 1 then return nil, errors.validation(chosen, "exclusive", "verifyPayment takes exactly one of sessionId, userId, transactionId") end
  return chosen, value
end

--- Whether a and b are the same string (constant time).
-- @param a
-- @param b
-- @treturn boolean
function _M.same(a, b) return type(a) == "string" and type(b) == "string" and core.consteq(a, b) end
local same = _M.same

--- A signature error (forged, tampered or another payment's data) naming the field at fault.
-- The binding codes (`session_mismatch`, `request_mismatch`, ...) are MoCoPay's; a signature
-- check's own are `paykit.kit.signature`'s.
-- @tparam string field
-- @tparam string code
-- @tparam string message
-- @treturn table the error
function _M.forged(field, code, message)
  return errors.new { kind = "signature", field = field, code = code, message = message }
end
local forged = _M.forged

--- Checks a merchant's keep (the table purchase returned).
-- @param keep
-- @treturn boolean true
-- @return[2] nil
-- @return[2] a validation error (field `keep`)
function _M.check_keep(keep)
  if type(keep) ~= "table" or type(keep.request_id) ~= "string" or type(keep.reference_id) ~= "string"
    or (keep.session_id ~= nil and type(keep.session_id) ~= "string")
    or (keep.pid ~= nil and type(keep.pid) ~= "string") then
    return nil, errors.validation("keep", "invalid", "keep must be the table purchase returned ({request_id, reference_id, pid})")
  end
  return true
end

--- Binds a session's result to the purchase `keep` describes, and names the result after it.
-- The answer must carry this purchase's requestId or referenceId (neither may differ); an
-- answer carrying neither cannot be bound and comes back "pending" (bound = false) whatever
-- the session's state: the payment is then confirmed only by a signed notification
-- (`signed`: a notification whose signature covers the session and the reference binds them).
-- @tparam table r a verifyPayment result (its `payment`)
-- @tparam table keep
-- @tparam[opt] boolean signed
-- @treturn table r
-- @return[2] nil
-- @return[2] a signature error (`session_mismatch`, `request_mismatch`, `reference_mismatch`,
--   `product_mismatch`)
function _M.bind(r, keep, signed)
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

--- The buyer's return as a table of parameters.
-- @param params a table, a query string or a URL
-- @treturn table
-- @return[2] nil
-- @return[2] a validation error
function _M.return_params(params)
  if type(params) == "string" then
    local q = params:match("%?(.*)$") or params
    local map, e = core.query_decode(q)
    if not map then return nil, errors.validation("params", "invalid_query", "return parameters are not a valid query string: " .. tostring(e)) end
    return map
  end
  if type(params) ~= "table" then return nil, errors.validation("params", "invalid", "return parameters must be a table or a query string") end
  return params
end

--- The one value of a return parameter: every spelling of the name (case-insensitive)
-- counted; a repeated or missing one is refused (a forger's second sessionId must not be the
-- one read).
-- @tparam table p the parameters
-- @tparam string name
-- @treturn string the value
-- @return[2] nil
-- @return[2] a validation error (`required`, `repeated`, `invalid`)
function _M.single(p, name)
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

return _M
