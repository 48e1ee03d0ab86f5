--- paykit.kit.signature: HMAC signatures over raw bytes, for every provider alike.
--
-- One set of codes (signature errors, `kind = "signature"`), whatever the provider:
--
--  * `unsigned`       no signature where one is needed
--  * `malformed`      a signature (or its key id or timestamp) that is not of the right shape
--  * `unknown_key`    signed with a key id that is not configured
--  * `bad_signature`  the HMAC does not match (tampered, or another key)
--  * `too_old`        the signed timestamp is outside the replay window
--
-- `verify` recomputes the HMAC over exactly the bytes given (never over re-encoded decoded
-- fields) and compares in constant time (`paykit.core.consteq`). Key rotation: `keys` maps
-- ids to secrets; a key id names the one to use, without one every key is tried (each
-- comparison constant-time). A timestamp, when the provider signs one, must lie within
-- `max_age` seconds of the clock (both ways; default 300).
-- @module paykit.kit.signature
-- @usage
--   local signature = require "paykit.kit.signature"
--   local keys = assert(signature.keys({[0] = "old", [1] = "new"}, "notice_keys"))
--   local sig = signature.sign{message = raw, key = "new"}                      -- hex HMAC-SHA256
--   local id, err = signature.verify{message = raw, signature = sig, keys = keys, key_id = 1,
--     timestamp = ts, max_age = 300, provider = "Tiny"}                         -- 1 | nil, err
local core = require "paykit.core"
local errors = require "paykit.errors"

local _M = {}

_M.CODES = { unsigned = true, malformed = true, unknown_key = true, bad_signature = true, too_old = true }

local LENGTHS = { sha1 = 20, sha256 = 32, sha512 = 64 }

--- A signature error with one of `CODES`.
-- @tparam string code
-- @tparam string message
-- @treturn table the error
-- @raise for a code not in `CODES` (misuse)
function _M.error(code, message)
  if not _M.CODES[code] then error("signature.error: unknown code " .. tostring(code), 2) end
  return errors.signature(code, message)
end

--- Normalises a key map `{[id] = secret}` (ids: non-negative integers or their text).
-- @param keys the option's value
-- @tparam string field the option's name, for the error
-- @treturn table `{[id] = secret}` (integer ids)
-- @treturn number the newest (highest) id
-- @return[2] nil
-- @return[2] a config error naming field
function _M.keys(keys, field)
  if type(keys) ~= "table" then
    return nil, errors.config(field, "invalid", field .. " must be a table {[id] = secret}")
  end
  local out, newest = {}, nil
  for k, v in pairs(keys) do
    local id = tonumber(k)
    if not id or id < 0 or id ~= math.floor(id) then
      return nil, errors.config(field, "invalid", field .. ": key ids must be non-negative integers")
    end
    id = math.floor(id)
    if type(v) ~= "string" or v == "" then
      return nil, errors.config(field, "invalid", field .. ": key " .. id .. " must be a non-empty string")
    end
    out[id] = v
    if not newest or id > newest then newest = id end
  end
  if not newest then return nil, errors.config(field, "required", field .. " must hold at least one key") end
  return out, newest
end

--- The HMAC of message with key.
-- @tparam table t `message`, `key`, `digest` ("sha256"), `encoding` ("hex" or "base64")
-- @treturn string the signature text
function _M.sign(t)
  return core.hmac(t.digest or "sha256", t.key, t.message, t.encoding or "hex")
end

-- Whether text has the shape of an HMAC of the digest in the encoding.
local function well_formed(text, digest, encoding)
  local n = LENGTHS[digest] or 32
  if encoding == "base64" then
    return #text == 4 * math.ceil(n / 3) and text:find("^[%w%+/]+=*$") ~= nil
  end
  return #text == 2 * n and text:find("^%x+$") ~= nil
end

--- Verifies an HMAC over raw bytes.
-- @tparam table t
--
--  * `message` (string) the signed bytes, as received
--  * `signature` (string) the signature as received (nil or "": `unsigned`)
--  * `keys` `{[id] = secret}`; `key_id` the id the message names (nil: try every key)
--  * `digest` ("sha256"), `encoding` ("hex": compared case-insensitively; or "base64")
--  * `timestamp` the signed unix time, when the provider signs one (a number or digits);
--    `max_age` seconds (300), `clock` (os.time)
--  * `provider` a name for the messages ("the Tiny notice ...")
-- @treturn number the id of the key that matched
-- @return[2] nil
-- @return[2] a signature error (one of `CODES`)
function _M.verify(t)
  local what = "the " .. (t.provider or "provider") .. " notice"
  local sig, digest, encoding = t.signature, t.digest or "sha256", t.encoding or "hex"
  if sig == nil or sig == "" then return nil, _M.error("unsigned", what .. " carries no signature") end
  if type(sig) ~= "string" or type(t.message) ~= "string" or not well_formed(sig, digest, encoding) then
    return nil, _M.error("malformed", what .. "'s signature is not " .. encoding .. " of an HMAC-" .. digest:upper())
  end
  if encoding == "hex" then sig = sig:lower() end
  local ids = {}
  if t.key_id ~= nil then
    local id = tonumber(t.key_id)
    if not id or id ~= math.floor(id) or id < 0 then
      return nil, _M.error("malformed", what .. "'s key id is not a non-negative integer")
    end
    if not t.keys[id] then
      return nil, _M.error("unknown_key", what .. " is signed with key id " .. tostring(t.key_id) ..
        ", which is not among the configured keys")
    end
    ids[1] = id
  else
    for id in pairs(t.keys) do ids[#ids + 1] = id end
    table.sort(ids)
  end
  local matched
  for _, id in ipairs(ids) do
    local want = core.hmac(digest, t.keys[id], t.message, encoding)
    if core.consteq(want, sig) and not matched then matched = id end
  end
  if not matched then return nil, _M.error("bad_signature", what .. "'s signature does not match") end
  if t.timestamp ~= nil then
    local ts = tonumber(t.timestamp)
    if not ts or not tostring(t.timestamp):find("^%d+$") then
      return nil, _M.error("malformed", what .. "'s timestamp is not unix seconds")
    end
    local age = (t.clock or os.time)() - ts
    if math.abs(age) > (t.max_age or 300) then
      return nil, _M.error("too_old", what .. " was signed " .. math.floor(age) .. " s ago, outside the " ..
        (t.max_age or 300) .. " s replay window")
    end
  end
  return matched
end

return _M
