--- paykit.kit.registry: which providers are installed, and their sandbox simulators.
--
-- Nothing else in paykit lists the providers: `paykit.<name>{...}`, `paykit.PROVIDERS`, the
-- sandbox's nginx locations and its index page all read this registry.
--
--     registry.register{name=, module=, title=, simulator=, doc=}
--
--  * `name` the constructor's name (`paykit.<name>`), `[a-z][a-z0-9_]*`
--  * `module` the provider module (`require`d on first use; it exports `new(opts)`)
--  * `title` for pages and messages ("Zippy"), `doc` a one-line description
--  * `simulator` (optional) the module serving `/<name>/...` in the sandbox (inside nginx:
--    it exports `handle(util)`, see `paykit.sandbox.util`)
--
-- The three providers paykit ships are registered below; another is registered by the code
-- that uses it (a spec, an application) before `paykit.<name>` or `sandbox.start` is called.
-- @module paykit.kit.registry
-- @usage
--   local registry = require "paykit.kit.registry"
--   registry.register{name = "tiny", module = "spec.support.tiny", title = "Tiny",
--     simulator = "spec.support.tiny_sim", doc = "hosted page with HMAC-signed notices"}
--   local gw = require("paykit").tiny{...}
local _M = {}

local list, by_name = {}, {}

--- Registers a provider (again: replaces its entry, keeping its place).
-- @tparam table t the fields above
-- @treturn table the entry
-- @raise for a bad name or module (misuse)
function _M.register(t)
  if type(t) ~= "table" or type(t.name) ~= "string" or not t.name:find("^[a-z][a-z0-9_]*$") then
    error("registry.register: name must match [a-z][a-z0-9_]*", 2)
  end
  if type(t.module) ~= "string" then error("registry.register: module must be a module name", 2) end
  if t.simulator ~= nil and type(t.simulator) ~= "string" then error("registry.register: simulator must be a module name", 2) end
  local e = { name = t.name, module = t.module, title = t.title or t.name, simulator = t.simulator, doc = t.doc }
  if not by_name[t.name] then list[#list + 1] = t.name end
  by_name[t.name] = e
  return e
end

--- The entry of a provider, or nil.
-- @tparam string name
-- @treturn ?table `{name=, module=, title=, simulator=, doc=}`
function _M.get(name) return by_name[name] end

--- The registered names, in registration order (a new table).
-- @treturn {string,...}
function _M.names()
  local out = {}
  for i, n in ipairs(list) do out[i] = n end
  return out
end

--- The entries that have a simulator, in order.
-- @treturn {table,...}
function _M.simulators()
  local out = {}
  for _, n in ipairs(list) do
    if by_name[n].simulator then out[#out + 1] = by_name[n] end
  end
  return out
end

-- The providers paykit ships (the rockspec installs their files).
_M.register { name = "moka", module = "paykit.providers.moka", title = "Moka", simulator = "paykit.sandbox.moka",
  doc = "card payments with 3D Secure" }
_M.register { name = "mocopay", module = "paykit.providers.mocopay", title = "MoCoPay", simulator = "paykit.sandbox.mocopay",
  doc = "mobile carrier billing" }
_M.register { name = "zippy", module = "paykit.providers.zippy", title = "Zippy", simulator = "paykit.sandbox.zippy",
  doc = "hosted card and carrier payment pages" }

return _M
