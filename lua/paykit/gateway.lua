--- paykit.gateway: pieces of the uniform flow shared by every provider.
--
-- Every provider instance offers:
--
--     gw:purchase(p)               -> result ("redirect" | "paid" | "failed" | "pending")
--     gw:complete(params, keep)    -> result | nil, err
--     gw:notification(req)         -> result, reply | nil, err, reply
--     gw:status(ref)               -> result
--
-- A provider module uses:
--
--     gateway.base(name, opts)     common instance fields: logger (scrubbing), transport
--     gateway.result{...}          a result table with the documented fields
--     gateway.seen(capacity)       bounded memory of notifications already processed
--                                  (add/has/get; claim/settle/release/wait around a yield)
--     gateway.reply(status, body)  the reply a notification handler sends back
--     gateway.form(req)            decoded form/query parameters of a notification
--     gateway.field(map, names)    case-insensitive lookup of the first present name
--
-- `gateway.STATUSES` is the set of result statuses: redirect, paid, failed, pending,
-- authorized, voided, refunded.
-- @module paykit.gateway
local http = require "paykit.http"
local runtime = require "paykit.runtime"
local errors = require "paykit.errors"
local redact = require "paykit.redact"

local _M = {}

-- tostring() of a result or a keep: a scrubbed rendering (paykit.redact.dump), never a secret.
local Printed = { __tostring = function(t) return "paykit " .. redact.dump(t) end }

-- A result whose `raw` is decoded on its first read: its answer's text (weak keys: the text
-- goes with the result), and per reader options the metatable that decodes it (weak keys and
-- values: a metatable no live result uses is dropped, and with it its hold on the options,
-- also on LuaJIT, whose weak-keyed tables are no ephemerons; the next result makes another).
local RAW_TEXT = setmetatable({}, { __mode = "k" })
local core_json_decode = require("paykit.core").json_decode
local LAZY = setmetatable({}, { __mode = "kv" })
local LAZY_DEFAULT
-- the options and metatable of the last lazy result (one reader's, call after call): held
-- weakly ([1] the options, [2] the metatable, whose decoder closes over them), so that reader
-- options nobody else holds are collected with their LAZY entry (strong upvalues kept them)
local LAST = setmetatable({}, { __mode = "v" })
local function lazy_mt(opts)
  local mt = opts and LAZY[opts] or (not opts and LAZY_DEFAULT)
  if mt then LAST[1], LAST[2] = opts, mt; return mt end
  mt = {
    __tostring = Printed.__tostring,
    __index = function(r, k)
      if k ~= "raw" then return nil end
      local text = RAW_TEXT[r]
      if text == nil then return nil end
      RAW_TEXT[r] = nil
      -- the text was read by the same reader before this result was made: it decodes
      local v = core_json_decode(text, opts)
      rawset(r, "raw", v)
      setmetatable(r, Printed)
      return v
    end,
  }
  if opts then LAZY[opts] = mt else LAZY_DEFAULT = mt end
  LAST[1], LAST[2] = opts, mt
  return mt
end

local STATUSES = { redirect = true, paid = true, failed = true, pending = true,
                   authorized = true, voided = true, refunded = true }
_M.STATUSES = STATUSES

--- A result table (a shallow copy of t).
-- Result: {status, provider, reference, provider_reference, amount, currency, code, message, raw, ...}
-- @tparam table t the fields: `status` (one of `STATUSES`, required), `provider`, `reference`
--   (the merchant's), `provider_reference`, `amount` (decimal string), `currency`, `code`,
--   `message`, `raw`, and for a redirect `redirect_url`, `method`, `form`, `keep`;
--   `request_id` (the provider's id of the answer, see `paykit.http.new`) and `correlation_id`
--   (the id paykit sent) default to those of the last answer this coroutine received since
--   the last result or error was built (`paykit.errors.take_ids`), nil when there was none
-- @treturn table the result; `tostring(result)` and `tostring(result.keep)` give a scrubbed
--   rendering (@{paykit.redact.dump})
-- @raise for an unknown status
-- @tparam[opt] boolean owned t is the caller's own fresh table: it becomes the result (no copy)
-- @tparam[opt] string raw_text the answer's JSON text: `result.raw` is then decoded from it
--   on its first read (with `raw_opts`, `paykit.core.json_decode`'s options), exactly as the
--   provider's reader decodes it; until then `pairs(result)` and `tostring(result)` do not
--   show `raw` (nor the text: it is held outside the result)
-- @tparam[opt] table raw_opts
function _M.result(t, owned, raw_text, raw_opts)
  if not STATUSES[t.status] then error("gateway.result: unknown status " .. tostring(t.status), 2) end
  local r = t
  if not owned then
    r = {}
    for k, v in pairs(t) do r[k] = v end
  end
  -- the ids of the answer this result comes from (paykit.http noted them in this coroutine)
  local request_id, correlation_id = errors.take_ids()
  if r.request_id == nil then r.request_id = request_id end
  if r.correlation_id == nil then r.correlation_id = correlation_id end
  -- printed, a result and its keep are scrubbed (the keep holds secrets: Moka's CodeForHash)
  if type(r.keep) == "table" and getmetatable(r.keep) == nil then setmetatable(r.keep, Printed) end
  if raw_text ~= nil and r.raw == nil then
    RAW_TEXT[r] = raw_text
    local mt = LAST[2]
    setmetatable(r, (mt and raw_opts == LAST[1]) and mt or lazy_mt(raw_opts))
    return r
  end
  setmetatable(r, Printed)
  return r
end

local take_ids = errors.take_ids

--- @{result} for a result a provider made whole, with its answer's text: what @{result} does
-- with `owned` and `raw_text`, without its checks of t (a hot path's: Moka's 3D start).
-- t must be a fresh table of the caller's with a known `status`, no `raw`, `request_id` or
-- `correlation_id`, and a `keep` (a fresh table without metatable) or none; the result is the
-- same as @{result}(t, true, raw_text, raw_opts) gives.
-- @tparam table t
-- @tparam string raw_text
-- @tparam[opt] table raw_opts
-- @tparam[opt] boolean ids_taken true: the caller took the ids (`paykit.errors.take_ids`, in
--   the coroutine of the answer) and t carries them as `request_id` and `correlation_id`
--   (made with t: no member added later)
-- @treturn table the result
function _M.lazy_result(t, raw_text, raw_opts, ids_taken)
  if not ids_taken then t.request_id, t.correlation_id = take_ids() end
  local keep = t.keep
  if keep then setmetatable(keep, Printed) end
  RAW_TEXT[t] = raw_text
  local mt = LAST[2]
  -- (setmetatable, then return t: LuaJIT cannot record a tail call of setmetatable that
  -- returns below the frame a trace started in, and a trace through a provider call stopped here)
  setmetatable(t, (mt and raw_opts == LAST[1]) and mt or lazy_mt(raw_opts))
  return t
end

-- Bounded set: remembers the last `capacity` keys (FIFO eviction).
local Seen = {}
Seen.__index = Seen

local PENDING = setmetatable({}, { __tostring = function() return "gateway.seen pending claim" end })

--- A bounded set that remembers the last `capacity` keys (FIFO eviction): the memory of
-- notifications already processed, optionally with a value per key (e.g. the first result).
-- A key can also be claimed before the work that decides its value (@{Seen:claim}), so that
-- concurrent deliveries of one notification (paykit.batch tasks, nginx light threads of one
-- worker) agree on which one is first even when that work yields; one process only.
-- @tparam[opt=1024] number capacity how many keys to keep
-- @treturn Seen the set
function _M.seen(capacity)
  capacity = capacity or 1024
  if type(capacity) ~= "number" or capacity < 1 or capacity ~= math.floor(capacity) then
    error("gateway.seen: capacity must be a positive integer", 2)
  end
  return setmetatable({ capacity = capacity, keys = {}, slot = {}, ring = {}, head = 0, count = 0 }, Seen)
end

--- A bounded set (from @{seen}).
-- @type Seen

-- Puts key in the next ring slot, forgetting the oldest key there.
local function insert(self, key, value)
  self.head = self.head % self.capacity + 1
  local old = self.ring[self.head]
  if old ~= nil then
    self.keys[old], self.slot[old] = nil, nil
  else
    self.count = self.count + 1
  end
  self.ring[self.head] = key
  self.keys[key], self.slot[key] = value, self.head
end

--- Whether the set holds key (a claimed key is held).
-- @param key the key
-- @treturn boolean
function Seen:has(key) return self.keys[key] ~= nil end

--- The value stored with key by @{Seen:add} or @{Seen:settle}; nil when key is not held, has
-- no value or is only claimed.
-- @param key the key
-- @return the value
function Seen:get(key)
  local v = self.keys[key]
  if v == true or v == PENDING then return nil end
  return v
end

--- Adds key (with an optional value); returns true when it was already there (or claimed).
-- When the set is full the oldest key and its value are forgotten. A key already held keeps
-- its first value.
-- @param key the key
-- @param[opt] value what to remember with it (see @{Seen:get})
-- @treturn boolean true when key was already there (a duplicate)
function Seen:add(key, value)
  if self.keys[key] ~= nil then return true end
  if value == nil then value = true end
  insert(self, key, value)
  return false
end

--- Claims key before the work that decides it (which may yield).
-- Returns true when this caller holds the claim now and must later @{Seen:settle} or
-- @{Seen:release} it; false, "pending" when another caller holds the claim; false, "done",
-- value when the key is settled (value as @{Seen:get}).
-- @param key the key
-- @treturn boolean claimed
-- @treturn[2] string "pending" or "done"
-- @return[2] the settled value (for "done")
function Seen:claim(key)
  local v = self.keys[key]
  if v == nil then
    insert(self, key, PENDING)
    return true
  end
  if v == PENDING then return false, "pending" end
  return false, "done", (v ~= true and v or nil)
end

--- Whether key is claimed and not yet settled or released.
-- @param key the key
-- @treturn boolean
function Seen:pending(key) return self.keys[key] == PENDING end

--- Settles a claimed key with its value (the claim becomes an ordinary key). A key that was
-- forgotten while claimed (the set filled up) is added again.
-- @param key the key
-- @param[opt] value what to remember with it
function Seen:settle(key, value)
  if value == nil then value = true end
  local v = self.keys[key]
  if v == PENDING then self.keys[key] = value
  elseif v == nil then insert(self, key, value) end
end

--- Releases a claim (the work failed): key is not held any more, so a later delivery is
-- processed afresh. Nothing for a key that is not claimed.
-- @param key the key
function Seen:release(key)
  if self.keys[key] ~= PENDING then return end
  self.ring[self.slot[key]] = nil
  self.keys[key], self.slot[key] = nil, nil
  self.count = self.count - 1
end

--- Waits while another caller holds the claim on key, at most `seconds` (default 60).
-- Waits only where waiting lets that caller go on (a paykit.batch task, an nginx cosocket
-- phase), with paykit.http's sleep; elsewhere it returns at once. Returns what
-- @{Seen:claim} would say now without claiming: "pending", "done" (and the value), or
-- "free" (the claim was released or forgotten).
-- @param key the key
-- @tparam[opt=60] number seconds the longest wait
-- @treturn string "pending", "done" or "free"
-- @return the value for "done"
function Seen:wait(key, seconds)
  local can_wait = http.in_cosocket_phase()
  local co = coroutine.running()
  if co and runtime.scheduler(co) ~= nil then can_wait = true end
  local deadline = http.now() + (seconds or 60)
  local delay = 0.002
  while self.keys[key] == PENDING and can_wait and http.now() < deadline do
    http.sleep(delay)
    delay = math.min(delay * 2, 0.05)
  end
  local v = self.keys[key]
  if v == PENDING then return "pending" end
  if v == nil then return "free" end
  return "done", (v ~= true and v or nil)
end

--- The number of keys held (at most the capacity).
-- @treturn number
function Seen:size() return self.count end

--- @section end

--- The reply a notification handler sends back: `{status=, body=, content_type="text/plain"}`.
-- @tparam[opt=200] number status the HTTP status
-- @tparam[opt="OK"] string body the body
-- @treturn table the reply
function _M.reply(status, body)
  return { status = status or 200, body = body or "OK", content_type = "text/plain" }
end

--- Decoded parameters of a notification request: body (form) merged over query.
-- Returns map, pairs | nil, err
-- @tparam table req `{method=, query=, body=, headers=}`; query and body are raw
--   form-encoded strings (or already decoded tables)
-- @treturn table map of name to value (a repeated name: an array of values)
-- @treturn table pairs `{{name, value}, ...}` in order, query first
-- @return[2] nil
-- @return[2] a validation error (field "req" or "body")
function _M.form(req)
  if type(req) ~= "table" then
    return nil, errors.validation("req", "invalid", "notification request must be a table {method=, query=, body=, headers=}")
  end
  local core = require "paykit.core"
  local map, list = {}, {}
  for _, src in ipairs { req.query or "", req.body or "" } do
    if type(src) == "table" then
      for k, v in pairs(src) do map[k] = v; list[#list + 1] = { k, v } end
    elseif src ~= "" then
      local m, p = core.form_decode(src)
      if not m then
        return nil, errors.validation("body", "invalid_form", "notification body is not a valid form encoding")
      end
      for k, v in pairs(m) do map[k] = v end
      for _, kv in ipairs(p) do list[#list + 1] = kv end
    end
  end
  return map, list
end

--- First value among names, matched case-insensitively. Arrays (repeated keys) give their first.
-- @tparam table map name to value
-- @tparam string|{string,...} names the name or names to try, in order (an exact match first)
-- @return the value, or nil when no name is present
function _M.field(map, names)
  if type(names) == "string" then names = { names } end
  local lower = {}
  for k, v in pairs(map) do
    if type(k) == "string" then lower[k:lower()] = v end
  end
  for _, n in ipairs(names) do
    local v = map[n]
    if v == nil then v = lower[n:lower()] end
    if type(v) == "table" then v = v[1] end
    if v ~= nil then return v end
  end
  return nil
end

local core_json_encode = require("paykit.core").json_encode
local core_json_keys = require("paykit.core").json_keys

-- A small ordered JSON writer for request bodies, so that amounts go to the wire as exact
-- number text ("27.50") and never pass through a Lua float.
--   local o = gateway.object(); gateway.put(o, "Amount", gateway.decimal("27.50"))
--   gateway.json(o) --> '{"Amount":27.50}'
-- Plain Lua tables are written as arrays (sequence) or objects (keys sorted).
-- The metatables carry paykit.core.json_encode's markers, so the C writer keeps an object's
-- order and writes a decimal's text.
local Obj, Dec = { __json_keys = "_k", __json_values = "_v" }, { __json_number = 1 }
-- the member lists @{shared_keys} marked
local SHARED = setmetatable({}, { __mode = "k" })

--- An empty ordered JSON object, for @{put} and @{json}.
-- @treturn table the object
function _M.object() return setmetatable({ _k = {}, _v = {} }, Obj) end

--- Appends a member to an ordered object (nothing when v is nil).
-- @tparam table o an object from @{object}
-- @tparam string k the member name
-- @param v the value: string, boolean, integer, @{decimal}, object or table (nil: left out)
-- @treturn table o, for chaining
function _M.put(o, k, v)
  if v ~= nil then
    local keys = o._k
    if SHARED[keys] then
      -- a shared member list (@{shared_keys}) is never changed: this object gets its own copies
      local copy = {}
      for i = 1, #keys do copy[i] = keys[i] end
      keys = copy
      o._k = copy
    end
    local n = #keys + 1
    keys[n] = k; o._v[n] = v
  end
  return o
end

--- An ordered object made of its member names and values at once (for @{put} and @{json}):
-- faster than @{object} and a @{put} per member when the members are known.
-- @tparam table keys the member names, in order (the object keeps this table)
-- @tparam table values their values, none nil (the object keeps this table)
-- @treturn table the object
function _M.object_of(keys, values) return setmetatable({ _k = keys, _v = values }, Obj) end

--- Marks a member name list as shared by many objects (a constant of a provider's request
-- shape, for @{object_of}): @{put} on an object holding it copies the list first. The list
-- must not be changed afterwards (its names are also kept written, at keys[0]).
-- @tparam table keys the member names
-- @treturn table keys
function _M.shared_keys(keys)
  SHARED[keys] = true
  -- the names written once (paykit.core.json_keys, kept at keys[0]): the C writer copies them
  if keys[0] == nil then keys[0] = core_json_keys(keys) end
  return keys
end
--- A decimal number written to JSON as its exact text (an amount: "27.50" stays 27.50).
-- @tparam string text an optionally negative decimal, e.g. "27.50"
-- @treturn table the wrapped decimal, for @{put} or @{json}
-- @raise when text is not a decimal string
function _M.decimal(text)
  if type(text) ~= "string" or not text:match("^%-?%d+%.?%d*$") then error("gateway.decimal: not a decimal string: " .. tostring(text), 2) end
  return setmetatable({ text }, Dec)
end

--- A decimal of text already known to be canonical decimal text (`paykit.money.format`'s
-- output): @{decimal} without the check. The C writer still refuses text that is not a JSON
-- number.
-- @tparam string text
-- @treturn table the wrapped decimal
function _M.decimal_text(text) return setmetatable({ text }, Dec) end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESC[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function write(v, out)
  local t = type(v)
  if t == "string" then out[#out + 1] = quote(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge or v ~= math.floor(v) then
      error("gateway.json: only integer numbers are written; use gateway.decimal for amounts", 0)
    end
    out[#out + 1] = string.format("%.0f", v)
  elseif t == "table" then
    local mt = getmetatable(v)
    if mt == Dec then out[#out + 1] = v[1]
    elseif mt == Obj then
      out[#out + 1] = "{"
      for i = 1, #v._k do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(tostring(v._k[i])); out[#out + 1] = ":"
        write(v._v[i], out)
      end
      out[#out + 1] = "}"
    elseif next(v) == nil or v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        write(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(k); out[#out + 1] = ":"
        write(v[k], out)
      end
      out[#out + 1] = "}"
    end
  elseif v == nil then out[#out + 1] = "null"
  elseif t == "userdata" and core_json_encode(v) then
    out[#out + 1] = core_json_encode(v) -- a core.json_raw: its kept text
  else error("gateway.json: cannot write a " .. t, 0) end
end

--- Writes a value as JSON text.
-- Ordered objects keep their order, plain tables become arrays (a sequence, or empty) or
-- objects (keys sorted), decimals are written as their text.
-- @param v the value
-- @treturn string the JSON text
-- @raise for a non-integral number (use @{decimal}) or a value of another type (function, ...)
function _M.json(v)
  -- paykit.core's writer (about 15x faster); what it refuses (invalid UTF-8, a table mixing
  -- array and object keys) goes through the Lua writer below, as before, which raises only
  -- for what neither can write
  local s = core_json_encode(v)
  if s then return s end
  return _M.json_lua(v)
end

--- The Lua writer alone (what @{json} falls back to; the specs compare the two).
-- @param v the value
-- @treturn string the JSON text
-- @raise as @{json}
function _M.json_lua(v)
  local out = {}
  write(v, out)
  return table.concat(out)
end

-- The JSON member of a provider's answers that holds its request id (MoCoPay's initPayment
-- answers `requestId`, "Payment initialization request ID"; Moka and Zippy name none).
-- A provider module may pass `request_id_field` in its options instead.
local REQUEST_ID_FIELD = { mocopay = "requestId" }

--- Common instance fields for a provider: its name, a scrubbing logger and a transport.
-- @tparam string name the provider name, e.g. "moka"
-- @tparam[opt] table opts `logger`, `transport` (an existing `paykit.http` transport), every
--   `paykit.http.new` option (`timeout`, `connect_timeout`, `send_timeout`, `read_timeout`,
--   `pool_size`, `keepalive_timeout`, `pool_name`, `correlation_header`, `request_id_headers`,
--   `request_id_field`, `cafile`, `capath`, `verify_tls`, `max_response`, `hooks`, `retry`,
--   `sleep`, `user_agent`, `allow_blocking`; all of `paykit.http.OPTIONS` but `clock` and `random`) and
--   `duplicate_capacity` (default 1024)
-- @treturn table `{provider=, log=function(level, line), http=transport, seen=Seen}`
-- @raise what `paykit.http.new` raises for bad transport options; a config error for a
--   duplicate_capacity that is not a positive integer
function _M.base(name, opts)
  opts = opts or {}
  local log = http.make_logger(opts.logger)
  local transport = opts.transport
  if type(transport) ~= "table" then -- none, or the kind of transport to make ("wire", ...)
    local t = {}
    -- every transport option but the test clocks (a provider's own `clock` is the wall clock)
    for k in pairs(http.OPTIONS) do
      if k ~= "clock" and k ~= "random" then t[k] = opts[k] end
    end
    if t.request_id_field == nil then t.request_id_field = REQUEST_ID_FIELD[name] end
    transport = http.new(t)
  end
  local capacity = opts.duplicate_capacity or 1024
  if type(capacity) ~= "number" or capacity < 1 or capacity ~= math.floor(capacity) then
    error(errors.config("duplicate_capacity", "invalid", "duplicate_capacity must be a positive integer"), 2)
  end
  return {
    provider = name,
    log = log,
    http = transport,
    seen = _M.seen(capacity),
  }
end

return _M
