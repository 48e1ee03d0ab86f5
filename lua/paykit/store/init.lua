--- paykit.store: the store interface, and the stores behind it.
--
-- A store keeps short strings under string keys, each with a TTL, where every paykit instance
-- of one shop can see them: notifications already handled, the payment journal's records,
-- leases and locks. Three stores implement it:
--
--  * `paykit.store.memory` (the default): one Lua state (tests, single-process scripts);
--  * `paykit.store.shdict`: an nginx `lua_shared_dict`, seen by every worker of one nginx;
--  * `paykit.store.redis`: Redis (or Redis Cluster), seen by every process on every machine.
--
-- Every method returns its documented values, or `nil, err` where err is a paykit error
-- (`kind = "transport"`, code `store_unavailable`; `kind = "timeout"`, code `store_timeout`;
-- `kind = "config"` for refused credentials). TTLs are seconds (fractions allowed); 0 or nil
-- means no expiry.
--
--     store:get(key)                    -> value | nil (absent)
--     store:add(key, value, ttl)        -> true | false, "exists"      (add if absent)
--     store:set(key, value, ttl)        -> true
--     store:delete(key)                 -> true
--     store:transition(key, field, from, to, patch)
--                                       -> true, record | false, "conflict", record | false, "missing"
--     store:lock(key, owner, ttl)       -> true | false, "locked"
--     store:unlock(key, owner)          -> true | false, "not_owner"
--     store:index_add(name, member, score), store:index_remove(name, member) -> true
--     store:index_range(name, max_score, limit) -> {member, ...} (lowest score first)
--
-- `transition` is the one atomic read-modify-write: the value at key is a JSON object (a
-- record); when its `field` holds one of the strings in the set `from` (`{created = true}`),
-- it sets `field` to `to`, merges the flat table `patch` into the record (shallow), keeps the
-- key's TTL and answers the new record text; otherwise it changes nothing and answers the
-- record as it is. A forward-only state machine is `from` = the states allowed to move to
-- `to` (see `paykit.journal`). On Redis it is one Lua script (EVALSHA, EVAL after NOSCRIPT);
-- in a shared dict it runs under a short per-key lock; in memory it cannot be interrupted.
--
-- `lock` is `SET key owner NX PX ttl`; `unlock` deletes the key only when owner still holds it.
-- `index_add` keeps a member's first score (ZADD NX). The index is a sorted set of members
-- (the journal's open payments by age); it is a hint that
-- the sweeper checks against the records, so it need not be in the record's Cluster slot.
-- @module paykit.store
-- @usage
--   local store = require "paykit.store"
--   local s = store.memory()                        -- or store.redis{...}, store.shdict("journal")
--   assert(s:add("k", "v", 60))                     --> true
--   s:add("k", "w", 60)                             --> false, "exists"

local _M = {}
local cjson

-- The backends' shared parts (the error, the transition in Lua) live in paykit.store.base,
-- below this module and the backends it loads; they are this module's fields too.
local base = require "paykit.store.base"

--- The error a store answers when its backend did not answer (`paykit.store.base.error`).
-- @function error
-- @tparam string store the store's name ("redis", "shdict")
-- @tparam string message what happened (never a password)
-- @tparam[opt] string code the backend's code ("timeout", "WRONGPASS", ...)
-- @treturn table a paykit error: timeout/`store_timeout`, config/`store_auth` or
--   transport/`store_unavailable`
_M.error = base.error

--- The names of the methods every store has (the contract specs run them on each store).
_M.METHODS = { "get", "add", "set", "delete", "transition", "lock", "unlock",
               "index_add", "index_remove", "index_range" }

--- Whether s has every method of the interface.
-- @param s a value
-- @treturn boolean
function _M.is_store(s)
  if type(s) ~= "table" then return false end
  for _, m in ipairs(_M.METHODS) do
    if type(s[m]) ~= "function" then return false end
  end
  return true
end

--- An in-process store (`paykit.store.memory.new`).
-- @tparam[opt] table opts see `paykit.store.memory`
-- @treturn table the store
function _M.memory(opts) return require("paykit.store.memory").new(opts) end

--- A shared-dict store (`paykit.store.shdict.new`), inside nginx only.
-- @tparam string name the `lua_shared_dict` name
-- @treturn table the store
-- @return[2] nil
-- @return[2] a config error
function _M.shdict(name, opts) return require("paykit.store.shdict").new(name, opts) end

--- A Redis store (`paykit.store.redis.new`).
-- @tparam table opts the `paykit.redis.new` options
-- @treturn table the store
-- @return[2] nil
-- @return[2] a config error
function _M.redis(opts) return require("paykit.store.redis").new(opts) end

-- ---- a shared memory of notifications (the shape of gateway.seen) ----
local Seen = {}
Seen.__index = Seen

--- A memory of notifications already processed, shared through a store: the interface of
-- `paykit.gateway.seen` (`has`, `get`, `add`), so that an instance's `seen` can be replaced
-- (`gw.seen = store.seen(s)`) and every worker and server sees the same notifications.
-- Values (a first result) are kept as JSON. When the store does not answer, `add` answers nil
-- and the error (neither "new" nor "duplicate").
-- @tparam table s a store
-- @tparam[opt] table opts `prefix` ("paykit:seen:"), `ttl` (seconds a key is kept, 7 days)
-- @treturn table the shared set
function _M.seen(s, opts)
  opts = opts or {}
  return setmetatable({ store = s, prefix = opts.prefix or "paykit:seen:", ttl = opts.ttl or 7 * 86400 }, Seen)
end

--- A shared set (from @{seen}).
-- @type SharedSeen

--- Whether the set holds key.
-- @param key the key
-- @treturn boolean
function Seen:has(key) return self.store:get(self.prefix .. tostring(key)) ~= nil end

--- The value stored with key (nil when none).
-- @param key the key
-- @return the value
function Seen:get(key)
  local v = self.store:get(self.prefix .. tostring(key))
  if v == nil or v == "1" then return nil end
  cjson = cjson or require("cjson").new()
  local ok, t = pcall(cjson.decode, v)
  return ok and t or nil
end

--- Adds key (with an optional value) unless present; true when it was already there.
-- @param key the key
-- @param[opt] value a table or string to keep with it (JSON)
-- @treturn boolean true when key was already there (a duplicate)
-- @return[2] nil
-- @return[2] the store's error
function Seen:add(key, value)
  local text = "1"
  if value ~= nil then
    cjson = cjson or require("cjson").new()
    local ok, t = pcall(cjson.encode, value)
    if ok then text = t end
  end
  local added, err = self.store:add(self.prefix .. tostring(key), text, self.ttl)
  if added == nil then return nil, err end
  return not added
end

--- Always 0: a shared set does not count its keys.
-- @treturn number
function Seen.size() return 0 end

--- @section end

--- Applies a transition to record text, for the stores that run it in Lua
-- (`paykit.store.base.apply`).
-- @function apply
-- @tparam string text the record (JSON)
-- @treturn boolean|nil true when applied, false on conflict, nil when text is not a record
-- @treturn string the record after (or as it is)
_M.apply = base.apply

return _M
