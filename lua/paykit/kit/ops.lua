--- paykit.kit.ops: alike provider calls as data (the way lua-resty-redis makes its commands).
--
-- Each entry of a declaration's `operations` becomes a method `gw:<name>(...)`:
--
--     get_seller = { method = "GET", path = "/sellers/:uuid", args = { uuid = checks.key } },
--     list_products = { method = "GET", path = "/products", filter = { seller_id = checks.key } },
--     create_seller = { method = "POST", path = "/sellers", idempotent = true,
--                       fields = SELLER_FIELDS, body = function(self, t) return t end },
--     update_seller = { method = "PUT", path = "/sellers/:uuid", args = { uuid = checks.key },
--                       fields = SELLER_FIELDS, body = function(self, t, uuid) ... end },
--
--  * `path` with `:name` placeholders: the call's positional arguments, in path order, each
--    checked by `args[name](value, name)` (nil | err) and percent-encoded;
--  * `fields` (a set): the call then takes a table (after the path arguments) whose unknown
--    fields are refused by name; `body(self, t, ...)` -> body | nil, err builds the JSON body;
--  * `filter` (name -> check): an optional table of query parameters, each checked;
--  * `idempotent` (default: GET, HEAD, OPTIONS, PUT and DELETE; never POST or PATCH) decides retries after a send;
--  * `read(self, answer, info, ...)` -> value | nil, err (default: the answer; a 2xx the
--    wire's `success_from` calls unsuccessful is a provider error `declined` with its message).
-- @module paykit.kit.ops
local core = require "paykit.core"
local errors = require "paykit.errors"
local options = require "paykit.kit.options"
local wire = require "paykit.kit.wire"

local _M = {}
local unpack = table.unpack or unpack -- luacheck: ignore

-- The :name placeholders of a path, in order.
local function placeholders(path)
  local list = {}
  for n in path:gmatch(":([%a_][%w_]*)") do list[#list + 1] = n end
  return list
end

local function default_read(self, answer, info, name)
  if info.success then return answer end
  return nil, errors.provider { code = info.code and tostring(info.code) or "declined", provider = self.provider,
    op = self.provider .. "." .. name, provider_message = info.message,
    message = self.provider .. "." .. name .. ": " .. wire.provider_of(self).title .. " refused it"
      .. (info.message and (" (" .. tostring(info.message) .. ")") or "") }
end

--- Makes P.methods[name] for each operation.
-- @tparam table P the provider (from `paykit.kit.provider`)
-- @tparam table operations name -> entry
function _M.install(P, operations)
  for name, op in pairs(operations) do
    local names = placeholders(op.path)
    for _, n in ipairs(names) do
      if not (op.args and op.args[n]) then error("kit ops " .. name .. ": no check for path argument " .. n, 2) end
    end
    P.methods[name] = function(self, ...)
      local argv = { ... }
      local path = op.path
      for i, n in ipairs(names) do
        local v = argv[i]
        local e = op.args[n](v, n)
        if e then return nil, e end
        path = path:gsub(":" .. n, (core.pct_encode(tostring(v)):gsub("%%", "%%%%")), 1)
      end
      local req = { method = op.method, path = path, idempotent = op.idempotent }
      local rest = argv[#names + 1]
      if rest ~= nil and not op.fields and not op.filter then
        return nil, errors.validation(name, "invalid", name .. " takes " .. (#names == 0 and "no arguments" or
          ("only " .. table.concat(names, ", "))) .. ": gw:" .. name .. "(" .. table.concat(names, ", ") .. ")")
      end
      if op.fields then
        local t, err = options.fields(rest, op.fields, op.what or name)
        if not t then return nil, err end
        local copy = {}
        for k, v in pairs(t) do copy[k] = v end
        local body
        body, err = op.body(self, copy, unpack(argv, 1, #names))
        if body == nil then return nil, err end
        req.body = body
      elseif op.filter then
        local f = rest
        if f == nil then f = {} end
        local t, err = options.fields(f, op.filter, "filter")
        if not t then return nil, err end
        local keys = {}
        for k in pairs(op.filter) do keys[#keys + 1] = k end
        table.sort(keys)
        req.query = {}
        for _, k in ipairs(keys) do
          if t[k] ~= nil then
            local e = op.filter[k](t[k], k)
            if e then return nil, e end
            req.query[#req.query + 1] = { k, t[k] }
          end
        end
      end
      local answer, info = wire.commit(self, name, req)
      if answer == nil then return nil, info end
      if op.read then return op.read(self, answer, info, ...) end
      return default_read(self, answer, info, name)
    end
  end
end

return _M
