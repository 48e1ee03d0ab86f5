--- MoCoPay's request signature (mocopay-notes.md): the canonical string, the digest, the
-- `{api_key}:{signature}` value and signed notification queries for merchants' tests.
-- `paykit.providers.mocopay` offers the same functions (canonical, sign, signature_value,
-- signed_query); `to_pairs` is the parameter list both use.
--
-- signature = base64(DIGEST(api_secret .. canonical(path, params))), DIGEST MD5 (default) or
-- SHA-1; canonical(path, params) = path .. "?" .. name=value pairs (signature excluded) sorted
-- by name in byte order, joined with "&".
-- @module paykit.providers.mocopay_sign
local core = require "paykit.core"

local M = {}

local byte, format = string.byte, string.format

-- Byte-order "less than", independent of the C locale.
local function bytes_lt(a, b)
  local n = #a < #b and #a or #b
  for i = 1, n do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function str(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" and v == math.floor(v) and v >= -2^53 and v <= 2^53 then return format("%d", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  error("mocopay: parameter values must be strings", 3)
end

--- Pairs {{name, value}, ...} from a map (array values repeat the name) or a pairs list.
-- @tparam table params a map or `{{name, value}, ...}`; values are strings, numbers or booleans
-- @treturn table the pairs, as strings
-- @raise when a value is of another type
function M.to_pairs(params)
  local list = {}
  if params[1] ~= nil and type(params[1]) == "table" then
    for _, kv in ipairs(params) do list[#list + 1] = { str(kv[1]), str(kv[2]) } end
  else
    for k, v in pairs(params) do
      if type(v) == "table" then
        for _, x in ipairs(v) do list[#list + 1] = { str(k), str(x) } end
      else
        list[#list + 1] = { str(k), str(v) }
      end
    end
  end
  return list
end

--- The string MoCoPay signs after the secret.
-- path .. "?" .. name=value&... with every request
-- parameter but `signature`, sorted by name (then value) in plain byte order. Values are raw
-- (decoded) unless `encode` is true, which percent-encodes names and values (RFC 3986) first.
-- Vector: canonical("/v1/payment/initPayment/", {mcc="228", mnc="01", pid="12000", userId="123456789"})
--   == "/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789"
-- @tparam string path the request path (with the base_url prefix)
-- @tparam[opt] table params a map (array values repeat the name) or pairs `{{name, value}, ...}`;
--   values are strings, numbers or booleans
-- @tparam[opt] boolean encode percent-encode names and values first
-- @treturn string the canonical string
-- @raise when a value is of another type (a table inside a pair, a function, ...)
function M.canonical(path, params, encode)
  local list = {}
  for _, kv in ipairs(M.to_pairs(params or {})) do
    if kv[1] ~= "signature" then
      if encode then kv = { core.pct_encode(kv[1]), core.pct_encode(kv[2]) } end
      list[#list + 1] = kv
    end
  end
  table.sort(list, function(a, b)
    if a[1] ~= b[1] then return bytes_lt(a[1], b[1]) end
    return bytes_lt(a[2], b[2])
  end)
  local out = {}
  for i, kv in ipairs(list) do out[i] = kv[1] .. "=" .. kv[2] end
  return path .. "?" .. table.concat(out, "&")
end

M.DIGESTS = { md5 = true, sha1 = true }

--- The signature of a request.
-- base64(DIGEST(secret .. canonical(path, params, encode))), digest "md5" (default) or "sha1".
-- Vector: sign("this.is.a.secret", "/v1/payment/initPayment/",
--   {mcc="228", mnc="01", pid="12000", userId="123456789"}) == "WETDyNQLx0+8BJ16vDgiVg=="
-- @tparam string secret the api_secret
-- @tparam string path the request path
-- @tparam table params the parameters (see @{canonical})
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string base64 signature
-- @raise for another digest, or a parameter value of another type
function M.sign(secret, path, params, digest, encode)
  digest = digest or "md5"
  if not M.DIGESTS[digest] then error("mocopay: digest must be md5 or sha1", 2) end
  return core.digest(digest, secret .. M.canonical(path, params, encode), "base64")
end

local concat = table.concat

-- Whether pair a sorts before pair b: by name, then value, in byte order.
local function pair_lt(a, b)
  local an, bn = a[1], b[1]
  if an ~= bn then return bytes_lt(an, bn) end
  return bytes_lt(a[2], b[2])
end

--- A signer for one secret: what is fixed per instance (the secret, the digest, the encoding
-- choice) bound once; per call only the canonical string and the digest remain.
-- `sign(path, list[, prefix])` equals `prefix ..` @{sign}(secret, path, list, digest, encode)
-- (prefix default ""). Without encoding, a pairs list of strings (what @{to_pairs} makes) is
-- signed in one C call (`paykit.core.mocopay_signer`: the digest state after the secret made
-- once, the pairs sorted and fed in C); any other table goes the general way.
-- @tparam string secret the api_secret
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn function `sign(path, list[, prefix])` -> base64 signature (after prefix)
-- @treturn ?userdata the C signer (`paykit.core.mocopay_signer`; nil with encoding), whose
--   `:verify(path, name, value[, prefix])` signs one checked pair (verifyPayment's key)
-- @raise for another digest
function M.signer(secret, digest, encode)
  digest = digest or "md5"
  if not M.DIGESTS[digest] then error("mocopay: digest must be md5 or sha1", 2) end
  local hash, pct = core.digest, core.pct_encode
  local fast = not encode and core.mocopay_signer(digest, secret) or nil
  return function(path, list, prefix)
    if fast then
      local sig = fast:sign(path, list, prefix)
      if sig then return sig end
    end
    prefix = prefix or ""
    local n = #list
    if n == 0 and next(list) ~= nil then return prefix .. M.sign(secret, path, list, digest, encode) end -- a map
    for i = 1, n do
      local kv = list[i]
      if type(kv) ~= "table" or type(kv[1]) ~= "string" or type(kv[2]) ~= "string" then
        return prefix .. M.sign(secret, path, list, digest, encode)
      end
    end
    -- the pairs without `signature`, in byte order (insertion sort: a few pairs)
    local sorted, m = {}, 0
    for i = 1, n do
      local kv = list[i]
      if kv[1] ~= "signature" then
        if encode then kv = { pct(kv[1]), pct(kv[2]) } end
        local j = m
        while j > 0 and pair_lt(kv, sorted[j]) do sorted[j + 1] = sorted[j]; j = j - 1 end
        sorted[j + 1] = kv
        m = m + 1
      end
    end
    local out = {}
    for i = 1, m do out[i] = sorted[i][1] .. "=" .. sorted[i][2] end
    return prefix .. hash(digest, secret .. path .. "?" .. concat(out, "&"), "base64")
  end, fast
end

--- The signed value for the Signature header ("ApiKey " .. this) or the `signature` parameter.
-- @tparam string api_key the api_key
-- @tparam string secret the api_secret
-- @tparam string path the request path
-- @tparam table params the parameters
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string `api_key .. ":" .. signature`
function M.signature_value(api_key, secret, path, params, digest, encode)
  return api_key .. ":" .. M.sign(secret, path, params, digest, encode)
end

--- A signed notification query string, for merchants' own tests.
-- Signed the way this client checks it (parameters in byte order, RFC 3986 encoded,
-- `signature` last).
-- @tparam string api_key the api_key
-- @tparam string secret the api_secret
-- @tparam string path the notification path (the instance's notify_path)
-- @tparam table params the notification parameters (sessionId, status, ...)
-- @tparam[opt="md5"] string digest "md5" or "sha1"
-- @tparam[opt] boolean encode see @{canonical}
-- @treturn string the query string
function M.signed_query(api_key, secret, path, params, digest, encode)
  local list = M.to_pairs(params)
  local q = {}
  for i, kv in ipairs(list) do q[i] = core.pct_encode(kv[1]) .. "=" .. core.pct_encode(kv[2]) end
  table.sort(q, bytes_lt)
  q[#q + 1] = "signature=" .. core.pct_encode(M.signature_value(api_key, secret, path, params, digest, encode))
  return table.concat(q, "&")
end


return M
