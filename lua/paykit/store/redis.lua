--- paykit.store.redis: the store on Redis or Redis Cluster (`paykit.redis`).
--
-- Seen by every process on every machine that uses the same Redis. Each method is one round
-- trip: `add` and `lock` are `SET NX PX`, `transition` and `unlock` are Lua scripts (EVALSHA,
-- EVAL after NOSCRIPT) so that the read and the write cannot be split by another client.
-- With AOF on (`appendonly yes`, `appendfsync always` or `everysec`) what was written survives
-- a restart. A refused AUTH is a config error (`store_auth`), no answer within `timeout` a
-- timeout error (`store_timeout`), any other failure `store_unavailable`: callers such as
-- the journal fail closed on all of them.
--
-- Keys are used as given; the journal puts one payment's keys in one Cluster slot with a hash
-- tag (`paykit:{moka:order-7}:rec`).
-- @module paykit.store.redis
local redis = require "paykit.redis"
local store = require "paykit.store.base"
local cjson = require("cjson").new()

local _M = {}
local Store = {}
Store.__index = Store
Store.__tostring = function(self) return "paykit.store.redis(" .. tostring(self.client) .. ")" end

-- KEYS[1] record; ARGV: field, from (JSON set), to, patch (JSON object)
local TRANSITION = redis.script([=[
local v = redis.call('GET', KEYS[1])
if not v then return {0, 'missing'} end
local ok, rec = pcall(cjson.decode, v)
if not ok or type(rec) ~= 'table' then return redis.error_reply('PAYKIT the value is not a record') end
local from = cjson.decode(ARGV[2])
local cur = rec[ARGV[1]]
if type(cur) ~= 'string' or not from[cur] then return {0, 'conflict', v} end
for k, x in pairs(cjson.decode(ARGV[4])) do rec[k] = x end
rec[ARGV[1]] = ARGV[3]
local s = cjson.encode(rec)
redis.call('SET', KEYS[1], s, 'KEEPTTL')
return {1, s}
]=], { repeat_safe = true }) -- compare-and-set: a repeat answers conflict

-- KEYS[1] lock; ARGV[1] owner
local UNLOCK = redis.script([[
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
]], { repeat_safe = true }) -- deletes only its owner's lock: a repeat answers 0

--- A Redis store.
-- @tparam table|table opts the options of `paykit.redis.new`, or an existing `paykit.redis`
--   client as `opts.client`
-- @treturn table the store
-- @return[2] nil
-- @return[2] a config error naming the option
function _M.new(opts)
  opts = opts or {}
  local client = opts.client
  if not client then
    local err
    client, err = redis.new(opts)
    if not client then return nil, require("paykit.errors").config("store", "invalid", err) end
  end
  return setmetatable({ client = client }, Store)
end

local function ms(ttl)
  if not ttl or ttl <= 0 then return nil end
  return tostring(math.max(1, math.floor(ttl * 1000 + 0.5)))
end

local function call(self, ...)
  local v, err, code = self.client:call(...)
  if v == nil then return nil, store.error("redis", err, code) end
  return v
end

function Store:get(key)
  local v, err = call(self, "GET", key)
  if v == nil then return nil, err end
  if v == false then return nil end
  return v
end

local function set_nx(self, key, value, ttl)
  local p = ms(ttl)
  if p then return call(self, "SET", key, value, "NX", "PX", p) end
  return call(self, "SET", key, value, "NX")
end

function Store:add(key, value, ttl)
  local v, err = set_nx(self, key, value, ttl)
  if v == nil then return nil, err end
  if v == false then return false, "exists" end
  return true
end

function Store:set(key, value, ttl)
  local p = ms(ttl)
  local v, err
  if p then v, err = call(self, "SET", key, value, "PX", p) else v, err = call(self, "SET", key, value) end
  if v == nil then return nil, err end
  return true
end

function Store:delete(key)
  local v, err = call(self, "DEL", key)
  if v == nil then return nil, err end
  return true
end

function Store:transition(key, field, from, to, patch)
  local set = {}
  for k, on in pairs(from) do if on then set[k] = true end end
  local v, err, code = TRANSITION:run(self.client, { key },
    { field, next(set) and cjson.encode(set) or "{}", to, next(patch or {}) and cjson.encode(patch) or "{}" })
  if v == nil then return nil, store.error("redis", err, code) end
  if v[1] == 1 then return true, v[2] end
  if v[2] == "missing" then return false, "missing" end
  return false, "conflict", v[3]
end

function Store:lock(key, owner, ttl)
  local v, err = set_nx(self, key, owner, ttl)
  if v == nil then return nil, err end
  if v == false then return false, "locked" end
  return true
end

function Store:unlock(key, owner)
  local v, err, code = UNLOCK:run(self.client, { key }, { owner })
  if v == nil then return nil, store.error("redis", err, code) end
  if v == 1 then return true end
  return false, "not_owner"
end

function Store:index_add(name, member, score)
  local v, err = call(self, "ZADD", name, "NX", tostring(score), member)
  if v == nil then return nil, err end
  return true
end

function Store:index_remove(name, member)
  local v, err = call(self, "ZREM", name, member)
  if v == nil then return nil, err end
  return true
end

function Store:index_range(name, max_score, limit)
  local v, err = call(self, "ZRANGEBYSCORE", name, "-inf", tostring(max_score), "LIMIT", "0", tostring(limit))
  if v == nil then return nil, err end
  return v
end

return _M
