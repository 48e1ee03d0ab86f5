--- paykit.kit.notify: the one notification pipeline (decode, verify, dedupe per payment,
-- reply), and the small store interface the dedupe goes through.
--
-- The store interface (the shape of `paykit.store`, so a Redis or shared-dict store plugs in):
--
--     store:get(key)               -> value | nil
--     store:add(key, value, ttl)   -> true | false, "exists" | nil, err   (add if absent; ttl seconds)
--
-- `notify.memory{capacity = 1024}` is the in-process store (one Lua state; FIFO-bounded like
-- `paykit.gateway.seen`, and each key expires after its TTL). A provider instance uses the
-- `store` option when given, else its own memory store (`duplicate_capacity` keys).
--
-- The pipeline, `notify.handle(self, req)`, runs the provider's `notice` declaration:
--
--  * `decode(self, req)` -> raw | nil, err: finds the signed bytes in the request. req is
--    always a table `{method=, query=, body=, headers=, fields=}`: a raw string given to
--    `gw:notification(s)` arrives as `{body = s}`, a decoded table of parameters (what a web
--    framework hands over) as `{fields = t}`;
--  * `verify(self, raw, req)` -> notice | nil, err (a signature error from `paykit.kit.signature`);
--  * `payment(notice)` -> the key of the payment it is about: two notices of one payment
--    (a session notice and a transaction notice) are one payment;
--  * `result(self, notice)` -> the result (`paykit.kit.result`);
--  * `replies` (optional) `{ok = reply, rejected = reply, unavailable = reply}`.
--
-- Arguments after req (`gw:notification(req, extra)`, e.g. what the merchant kept for the
-- payment) are handed to decode, verify and result as they are.
--
-- Answers result, reply (200 "OK"), with `result.duplicate` true when that payment was
-- notified before (`result.first_status` says what it was then); or nil, err, reply (400
-- "REJECTED" for a refused notice, 503 when the store did not answer: the provider sends it
-- again later and nothing was recorded).
-- @module paykit.kit.notify
-- @usage
--   local notify = require "paykit.kit.notify"
--   local store = notify.memory{capacity = 4096}
--   store:add("tiny:order-1", "paid", 86400)   --> true
--   store:add("tiny:order-1", "paid", 86400)   --> false, "exists"
--   local result, reply = gw:notification{body = raw_body}          -- or gw:notification(raw_body)
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"

local _M = {}

_M.DEFAULT_TTL = 7 * 86400

local Memory = {}
Memory.__index = Memory

--- An in-process store.
-- @tparam[opt] table o `capacity` (1024 keys), `clock` (os.time)
-- @treturn table the store
function _M.memory(o)
  o = o or {}
  return setmetatable({ seen = gateway.seen(o.capacity or 1024), clock = o.clock or os.time }, Memory)
end

--- An in-process store (from @{memory}).
-- @type Memory

--- The value at key, nil when absent or expired.
-- @param key
-- @return value
function Memory:get(key)
  local e = self.seen:get(key)
  if e == nil then return nil end
  if e.expires and e.expires <= self.clock() then return nil end
  return e.value
end

--- Adds key unless present (and not expired).
-- @param key
-- @param value
-- @tparam[opt] number ttl seconds (0 or nil: no expiry)
-- @return true, or false, "exists"
function Memory:add(key, value, ttl)
  local e = self.seen:get(key)
  local now = self.clock()
  if e ~= nil and not (e.expires and e.expires <= now) then return false, "exists" end
  local expires = (ttl and ttl > 0) and (now + ttl) or nil
  if e ~= nil then
    e.value, e.expires = value, expires -- an expired key, taken again
  else
    self.seen:add(key, { value = value, expires = expires })
  end
  return true
end

--- How many keys are held (expired ones included until they are evicted).
-- @treturn number
function Memory:size() return self.seen:size() end

--- @section end

local DEFAULT_REPLIES = {
  ok = gateway.reply(200, "OK"),
  rejected = gateway.reply(400, "REJECTED"),
  unavailable = gateway.reply(503, "TRY LATER"),
}

--- A notification request in the one shape (see the module description).
-- @param req a raw string, a request table, or a decoded table of parameters
-- @treturn table `{method=, query=, body=, headers=, fields=}`
-- @return[2] nil
-- @return[2] a validation error (field `req`)
function _M.request(req)
  if type(req) == "string" then return { method = "POST", body = req } end
  if type(req) ~= "table" then
    return nil, errors.validation("req", "invalid",
      "notification expects the raw body (a string), {method=, query=, body=, headers=} or the decoded parameters")
  end
  if req.body ~= nil or req.query ~= nil or req.method ~= nil or req.headers ~= nil or req.fields ~= nil then
    return req
  end
  return { method = "POST", fields = req }
end

--- Runs the pipeline (see the module description).
-- @tparam table self the instance
-- @param req the request
-- @param ... the provider's extra arguments (given to decode, verify and result)
-- @treturn table result
-- @treturn table reply
-- @return[2] nil
-- @return[2] err
-- @return[2] reply
function _M.handle(self, req, ...)
  local P = require("paykit.kit.wire").provider_of(self)
  local n = P._decl.notice
  local replies = n.replies or DEFAULT_REPLIES
  local r, err = _M.request(req)
  local raw, notice
  if r then raw, err = n.decode(self, r, ...) end
  if raw then notice, err = n.verify(self, raw, r, ...) end
  if not notice then
    self.log("warn", "paykit " .. P.name .. " notification rejected: " .. tostring(err))
    return nil, err, replies.rejected
  end
  local result = n.result(self, notice, ...)
  local key = P.name .. ":" .. tostring(n.payment(notice))
  local added, why = self.store:add(key, result.status, self.dedupe_ttl or _M.DEFAULT_TTL)
  if added == nil then
    self.log("error", "paykit " .. P.name .. " notification not recorded: " .. tostring(why))
    return nil, why, replies.unavailable
  end
  result.duplicate = not added
  if not added then result.first_status = self.store:get(key) end
  return result, replies.ok
end

return _M
