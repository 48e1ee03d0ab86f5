-- paykit: taking payments through provider APIs (Moka, MoCoPay, Zippy).
--
--   local paykit = require "paykit"
--   local gw = paykit.moka{dealer_code = "...", username = "...", password = "...", env = "test"}
--   local result, err = gw:purchase{...}
--
-- Each call of paykit.<provider>{...} makes an independent instance with its own
-- credentials and options; nothing is global and nothing is shared between instances.
-- A provider module lives in paykit/providers/<name>.lua and exports new(opts) (or is
-- itself a function(opts)); it is loaded on first use.
local _M = {
  VERSION = "0.1.0",
  errors = require "paykit.errors",
  money = require "paykit.money",
  redact = require "paykit.redact",
}

local PROVIDERS = { "moka", "mocopay", "zippy" }
_M.PROVIDERS = PROVIDERS

local function constructor(name)
  return function(opts)
    local mod = require("paykit.providers." .. name)
    if type(mod) == "function" then return mod(opts) end
    return mod.new(opts)
  end
end

for _, name in ipairs(PROVIDERS) do _M[name] = constructor(name) end

-- paykit.batch(tasks, {max_in_flight = 64}): many provider calls at once (see paykit/batch.lua).
_M.batch = require "paykit.batch"

return _M
