-- The example shop's configuration, catalogue and payment gateways.
--
-- configure{} runs once in init_by_lua (before the workers fork); each worker then makes its
-- own provider instances on first use and keeps them (they hold keep-alive connections and
-- their own duplicate memory; the orders themselves live in the shared dict, see shop.orders).
local paykit = require "paykit"

local _M = {}

local config = {}
local gateways = {} -- provider name -> instance, per worker

function _M.configure(c) config = c end
function _M.config() return config end

-- One product per payment method. Amounts are decimal strings, never floats.
_M.PRODUCTS = {
  moka = { name = "Dragon egg", amount = "27.50", currency = "TL" },
  mocopay = { name = "500 gold coins", pid = "12000" }, -- MoCoPay prices the product (pid) itself
  zippy = { name = "Sword of dawn", amount = "0.99", currency = "EUR" },
}

-- Every worker counts its provider calls into one shared dict; /metrics renders them all.
_M.metrics = require("paykit.metrics").new { dict = "paykit_metrics" }

local LEVELS = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }
local function logger(level, line) ngx.log(LEVELS[level] or ngx.INFO, line) end -- lines come scrubbed

-- Sandbox credentials come from the simulators themselves; a real shop reads its own.
local MAKERS = {
  moka = function(sandbox)
    local dealer = require("paykit.sandbox.moka").credentials[1]
    return paykit.moka { dealer_code = dealer.DealerCode, username = dealer.Username, password = dealer.Password,
                         base_url = sandbox .. "/moka", logger = logger, hooks = _M.metrics:hooks() }
  end,
  mocopay = function(sandbox)
    local c = require("paykit.sandbox.mocopay").credentials
    return paykit.mocopay { api_key = c.api_key, api_secret = c.api_secret,
                            base_url = sandbox .. "/mocopay", logger = logger, hooks = _M.metrics:hooks() }
  end,
  zippy = function(sandbox)
    local sb = require "paykit.sandbox.zippy"
    return paykit.zippy { consumer_key = sb.CONSUMER_KEY, consumer_secret = sb.CONSUMER_SECRET,
                          notice_keys = sb.NOTICE_KEYS, base_url = sandbox .. "/zippy", logger = logger, hooks = _M.metrics:hooks() }
  end,
}

-- The worker's instance for a provider, or nil, err.
function _M.gateway(name)
  local gw = gateways[name]
  if gw then return gw end
  local make = MAKERS[name]
  if not make then return nil, "unknown provider" end
  local ok, made, err = pcall(make, config.sandbox)
  if not ok or not made then
    ngx.log(ngx.ERR, "shop: cannot set up ", name, ": ", tostring(ok and err or made))
    return nil, "provider not available"
  end
  gateways[name] = made
  return made
end

-- Absolute URL of a path of this shop.
function _M.url(path) return config.base .. path end

-- The merchant reference of an order: unique across restarts of the shop (boot token).
function _M.reference(order_id) return "shop-" .. config.boot .. "-" .. order_id end

return _M
