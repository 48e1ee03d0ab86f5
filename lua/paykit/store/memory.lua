--- paykit.store.memory: the in-process store (the default).
--
-- One Lua state only: two processes, or two nginx workers, each have their own. No method
-- yields, so each is atomic within the state. Expired keys are dropped when touched, and
-- at most `capacity` keys are kept: the oldest set first goes, or, with `evict = false` (what
-- a payment journal needs: a record dropped is a payment forgotten, and charged again), a
-- write that finds no room once the expired keys are gone answers `store_unavailable`.
-- @module paykit.store.memory
local core = require "paykit.core"
local store = require "paykit.store.base"

local _M = {}
local Memory = {}
Memory.__index = Memory
Memory.__tostring = function() return "paykit.store.memory" end

--- A new, empty store.
-- @tparam[opt] table opts `capacity` (100000 keys), `evict` (true: drop the oldest key to make
--   room; false: refuse the write), `clock` (seconds; default the monotonic clock)
-- @treturn table the store
function _M.new(opts)
  opts = opts or {}
  return setmetatable({ values = {}, expires = {}, order = {}, at = {}, head = 1, tail = 0, count = 0,
                        capacity = opts.capacity or 100000, clock = opts.clock or core.monotonic,
                        evict = opts.evict ~= false, indexes = {} }, Memory)
end

local function live(self, key)
  local e = self.expires[key]
  if e and e <= self.clock() then
    self.values[key], self.expires[key], self.at[key] = nil, nil, nil
    self.count = self.count - 1
  end
  return self.values[key]
end

-- order[i] = key, at[key] = i: the place of a key's latest insertion; an older place of a key
-- deleted and added again is skipped when its turn to be evicted comes.
-- Whether a new key has room: with evict false, the expired keys are dropped first (a walk
-- over them all, only when the store is full).
local function room(self)
  if self.evict or self.count < self.capacity then return true end
  local now = self.clock()
  for key, e in pairs(self.expires) do
    if e <= now then
      self.values[key], self.expires[key], self.at[key] = nil, nil, nil
      self.count = self.count - 1
    end
  end
  return self.count < self.capacity
end

local function full(self)
  return nil, store.error("memory", "the memory store is full (" .. self.capacity .. " keys, none expired)")
end

local function put(self, key, value, ttl)
  if self.values[key] == nil then
    self.count = self.count + 1
    self.tail = self.tail + 1
    self.order[self.tail] = key
    self.at[key] = self.tail
    while self.count > self.capacity and self.head <= self.tail do
      local i, old = self.head, self.order[self.head]
      self.order[i] = nil
      self.head = i + 1
      if self.at[old] == i and old ~= key then
        self.values[old], self.expires[old], self.at[old] = nil, nil, nil
        self.count = self.count - 1
      end
    end
  end
  self.values[key] = value
  self.expires[key] = (ttl and ttl > 0) and (self.clock() + ttl) or nil
end

function Memory:get(key) return live(self, key) end

function Memory:add(key, value, ttl)
  if live(self, key) ~= nil then return false, "exists" end
  if not room(self) then return full(self) end
  put(self, key, value, ttl)
  return true
end

function Memory:set(key, value, ttl)
  if live(self, key) == nil and not room(self) then return full(self) end
  put(self, key, value, ttl)
  return true
end

function Memory:delete(key)
  if live(self, key) ~= nil then
    self.values[key], self.expires[key], self.at[key] = nil, nil, nil
    self.count = self.count - 1
  end
  return true
end

function Memory:transition(key, field, from, to, patch)
  local text = live(self, key)
  if text == nil then return false, "missing" end
  local ok, after = store.apply(text, field, from, to, patch)
  if ok == nil then return nil, store.error("memory", "the value at " .. key .. " is not a record") end
  if not ok then return false, "conflict", text end
  self.values[key] = after -- the TTL stays
  return true, after
end

function Memory:lock(key, owner, ttl)
  local ok, err = self:add(key, owner, ttl)
  if ok == nil then return nil, err end
  if not ok then return false, "locked" end
  return true
end

function Memory:unlock(key, owner)
  if live(self, key) ~= owner then return false, "not_owner" end
  return self:delete(key)
end

function Memory:index_add(name, member, score)
  local ix = self.indexes[name]
  if not ix then ix = {}; self.indexes[name] = ix end
  if ix[member] == nil then ix[member] = score end
  return true
end

function Memory:index_remove(name, member)
  local ix = self.indexes[name]
  if ix then ix[member] = nil end
  return true
end

function Memory:index_range(name, max_score, limit)
  local out = {}
  for m, s in pairs(self.indexes[name] or {}) do
    if s <= max_score then out[#out + 1] = { m, s } end
  end
  table.sort(out, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
  local list = {}
  for i = 1, math.min(limit, #out) do list[i] = out[i][1] end
  return list
end

return _M
