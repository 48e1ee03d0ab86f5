--- paykit: taking payments through provider APIs (Moka, MoCoPay, Zippy).
--
-- Each call of `paykit.NAME{...}` (NAME one of `PROVIDERS`, the registered providers: `paykit.kit.registry`) makes an independent instance with its own
-- credentials and options; nothing is global and nothing is shared between instances.
-- A provider module lives in paykit/providers/NAME.lua and exports new(opts) (or is
-- itself a function(opts)); it is loaded on first use.
--
-- Fields: `VERSION` (the library version string), `PROVIDERS` (the provider names, in order),
-- `errors` (`paykit.errors`), `money` (`paykit.money`), `redact` (`paykit.redact`),
-- `runtime` (`paykit.runtime`: the nginx phase, and `allow_blocking` for a call that may
-- block the worker where cosockets are not available), `metrics` (`paykit.metrics`: the
-- transport's hooks as Prometheus metrics).
-- @module paykit
-- @usage
--   local paykit = require "paykit"
--   local gw = paykit.moka{dealer_code = "...", username = "...", password = "...", env = "test"}
--   local result, err = gw:purchase{...}
local runtime = require "paykit.runtime"

local _M = {
  VERSION = runtime.VERSION,
  runtime = runtime,
  metrics = require "paykit.metrics",
  errors = require "paykit.errors",
  money = require "paykit.money",
  redact = require "paykit.redact",
}

-- The providers come from the registry (paykit.kit.registry): the three paykit ships and any
-- registered later (`paykit.register{name=, module=, ...}`). `paykit.PROVIDERS` is the list of
-- their names at the time it is read; `paykit.<name>` is looked up on first use.
local registry = require "paykit.kit.registry"

--- Registers a provider: `paykit.register{name=, module=, title=, simulator=, doc=}`
-- (`paykit.kit.registry.register`); then `paykit.<name>{...}` makes its instances and the
-- sandbox serves its simulator.
-- @function register
-- @tparam table t `name`, `module` (required), `title`, `simulator`, `doc`
-- @treturn table the registry entry
_M.register = registry.register
_M.registry = registry

local function constructor(name)
  return function(opts)
    local mod = require(registry.get(name).module)
    if type(mod) == "function" then return mod(opts) end
    return mod.new(opts)
  end
end

setmetatable(_M, {
  __index = function(t, k)
    if k == "PROVIDERS" then return registry.names() end
    if type(k) == "string" and registry.get(k) then
      local c = constructor(k)
      rawset(t, k, c)
      return c
    end
  end,
})

--- A Moka instance (card payments, 3D Secure): `require("paykit.providers.moka").new(opts)`.
-- @function moka
-- @tparam table opts the options of `paykit.providers.moka.new`: `dealer_code`, `username`,
--   `password` (required), `env` or `base_url`, transport options, ...
-- @treturn Moka the instance
-- @return[2] nil
-- @return[2] a config error (`paykit.errors`)

--- A MoCoPay instance (mobile carrier billing): `require("paykit.providers.mocopay").new(opts)`.
-- @function mocopay
-- @tparam table opts the options of `paykit.providers.mocopay.new`: `api_key`, `api_secret`,
--   `base_url` (required), `digest`, `signature_in`, `amount_unit`, ...
-- @treturn Client the instance
-- @return[2] nil
-- @return[2] a config error (`paykit.errors`) naming a missing, malformed or unknown option

--- A Zippy instance (hosted card and carrier payment pages): `require("paykit.providers.zippy").new(opts)`.
-- @function zippy
-- @tparam table opts the options of `paykit.providers.zippy.new`: `consumer_key`,
--   `consumer_secret`, `base_url` (required), `notice_keys`, default URLs, ...
-- @treturn Zippy the instance
-- @raise a config error (`paykit.errors`) for a missing or malformed option

--- Many provider calls at once: `paykit.batch(tasks, {max_in_flight = 64})`.
-- The `paykit.batch` module (a callable table); see there.
-- @function batch
-- @tparam {function,...} tasks the calls to make, each a function of no arguments
-- @tparam[opt] table opts `max_in_flight` (default 64)
-- @treturn table results[i], the first value task i returned
-- @treturn table errs[i], the second value (or the error task i raised)
-- @raise when tasks is not an array of functions or max_in_flight is not a positive integer
_M.batch = require "paykit.batch"

-- Calls that never block the caller, for a game tick or an event loop: the `paykit.loop`
-- module (`paykit.loop.new()`); see there.
_M.loop = require "paykit.loop"

return _M
