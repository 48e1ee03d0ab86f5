--- paykit.store.shdict: the store on an nginx `lua_shared_dict` (every worker of one nginx).
--
-- `get`, `add`, `set`, `delete` and `lock` are single shared-dict operations (atomic across
-- workers). `transition` reads, checks and writes under a per-key lock (`add` of
-- "<key>\0cas" with a 1 s TTL; a waiter sleeps 1 ms between tries, at most `cas_wait` seconds,
-- where the phase allows ngx.sleep). `unlock` is a get and a delete: it could only remove
-- another owner's lock if this owner's lock expired between the two (a microsecond window;
-- use lock TTLs well above the work they guard). The index keeps one key per member
-- ("\0ix\0name\0member" = score) and `index_range` walks the dict's keys (get_keys): fine for
-- a sweeper's few calls a minute, not for every request.
-- A dict full of records answers `store_unavailable` ("no memory"): size it for the traffic.
-- @module paykit.store.shdict
-- @usage
--   # nginx.conf: lua_shared_dict paykit_journal 10m;
--   local s = require("paykit.store").shdict("paykit_journal")
local store = require "paykit.store.base"

local _M = {}
local Store = {}
Store.__index = Store
Store.__tostring = function(self) return "paykit.store.shdict(" .. self.name .. ")" end

--- A store on the named shared dict.
-- @tparam string name the `lua_shared_dict` name
-- @tparam[opt] table opts `cas_wait` (seconds a transition waits for the per-key lock, 2)
-- @treturn table the store
-- @return[2] nil
-- @return[2] a config error (not inside nginx, or no such dict)
function _M.new(name, opts)
  local errors = require "paykit.errors"
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    return nil, errors.config("store", "not_nginx", "a lua_shared_dict store exists only inside nginx")
  end
  local dict = ngx.shared[name]
  if not dict then
    return nil, errors.config("store", "no_dict", "no lua_shared_dict named " .. tostring(name) .. " (declare it in nginx.conf)")
  end
  opts = opts or {}
  return setmetatable({ dict = dict, name = name, ngx = ngx, cas_wait = opts.cas_wait or 2 }, Store)
end

local function fail(self, err) return nil, store.error("shdict " .. self.name, err) end

function Store:get(key)
  local v, err = self.dict:get(key)
  if v == nil and err then return fail(self, err) end
  return v
end

function Store:add(key, value, ttl)
  local ok, err = self.dict:add(key, value, ttl or 0)
  if ok then return true end
  if err == "exists" then return false, "exists" end
  return fail(self, err)
end

function Store:set(key, value, ttl)
  local ok, err = self.dict:set(key, value, ttl or 0)
  if not ok then return fail(self, err) end
  return true
end

function Store:delete(key)
  self.dict:delete(key)
  return true
end

local SLEEP_PHASES = { rewrite = true, access = true, content = true, timer = true, server_rewrite = true }

local function cas_lock(self, key)
  local lk = key .. "\0cas"
  local deadline = self.ngx.now() + self.cas_wait
  local phase = self.ngx.get_phase()
  while true do
    local ok, err = self.dict:add(lk, true, 1)
    if ok then return lk end
    if err ~= "exists" then return nil, err end
    if not SLEEP_PHASES[phase] then return nil, "the record is busy and this phase cannot wait" end
    self.ngx.sleep(0.001)
    self.ngx.update_time()
    if self.ngx.now() > deadline then return nil, "timed out waiting for the record's lock" end
  end
end

function Store:transition(key, field, from, to, patch)
  local lk, lerr = cas_lock(self, key)
  if not lk then return fail(self, lerr) end
  local text = self.dict:get(key)
  if text == nil then self.dict:delete(lk); return false, "missing" end
  local ok, after = store.apply(text, field, from, to, patch)
  if ok == nil then self.dict:delete(lk); return fail(self, "the value at " .. key .. " is not a record") end
  if not ok then self.dict:delete(lk); return false, "conflict", text end
  local ttl = self.dict:ttl(key) or 0
  if ttl < 0 then ttl = 0 end
  local sok, err = self.dict:set(key, after, ttl)
  self.dict:delete(lk)
  if not sok then return fail(self, err) end
  return true, after
end

function Store:lock(key, owner, ttl)
  local ok, err = self.dict:add(key, owner, ttl or 0)
  if ok then return true end
  if err == "exists" then return false, "locked" end
  return fail(self, err)
end

function Store:unlock(key, owner)
  if self.dict:get(key) ~= owner then return false, "not_owner" end
  self.dict:delete(key)
  return true
end

local function ix(name, member) return "\0ix\0" .. name .. "\0" .. member end

function Store:index_add(name, member, score)
  local ok, err = self.dict:add(ix(name, member), score)
  if not ok and err ~= "exists" then return fail(self, err) end
  return true
end

function Store:index_remove(name, member)
  self.dict:delete(ix(name, member))
  return true
end

function Store:index_range(name, max_score, limit)
  local prefix = "\0ix\0" .. name .. "\0"
  local out = {}
  for _, k in ipairs(self.dict:get_keys(0)) do
    if k:sub(1, #prefix) == prefix then
      local s = self.dict:get(k)
      if s and s <= max_score then out[#out + 1] = { k:sub(#prefix + 1), s } end
    end
  end
  table.sort(out, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
  local list = {}
  for i = 1, math.min(limit, #out) do list[i] = out[i][1] end
  return list
end

return _M
