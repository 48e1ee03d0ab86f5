-- The example shop's configuration, catalogue and payment gateways.
--
-- configure{} runs once in init_by_lua (before the workers fork); each worker then makes its
-- own provider instances on first use and keeps them (they hold keep-alive connections). Every
-- instance is wrapped by the payment journal (paykit.journal), which all workers share: in the
-- `paykit_journal` shared dict, or in Redis when `redis` (a URL) is configured (shop.store).
-- The journal decides which report of a payment (return, notification, status check, the
-- sweeper) is the first, and runs the grant hook (shop.orders.grant) once per paid payment.
-- init_worker starts the sweeper in every worker (one at a time works, under a store lock).
local paykit = require "paykit"
local journal = require "paykit.journal"
local sweep = require "paykit.journal.sweep"
local orders = require "shop.orders"
local shop_store = require "shop.store"

local _M = {}

local config = {}
local gateways = {} -- provider name -> journaled instance, per worker
local the_journal   -- per worker

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

-- The worker's journal (on the shared dict or Redis), or nil, err.
function _M.journal()
  if the_journal then return the_journal end
  local s, err = shop_store.new(config.redis)
  if not s then
    ngx.log(ngx.ERR, "shop: cannot set up the payment journal's store: ", tostring(err))
    return nil, err
  end
  the_journal, err = journal.new { store = s, prefix = shop_store.PREFIX }
  return the_journal, err
end

-- Whether the journal is on Redis (what the order page says).
function _M.store_name() return (config.redis and config.redis ~= "") and "redis" or "shared dict" end

-- The grant hook: the journal calls it once per paid payment (again, with the same token,
-- only if a worker died inside it); delivering is idempotent on the token (shop.orders.grant).
local function grant(record, token)
  local o = orders.by_reference(record.reference)
  if not o then return nil, "no order has reference " .. tostring(record.reference) end
  return orders.grant(o.id, token)
end

-- The worker's journaled instance for a provider, or nil, err.
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
  local j = _M.journal()
  if not j then return nil, "payment journal not available" end
  gateways[name] = j:wrap(made, { grant = grant })
  return gateways[name]
end

-- init_worker_by_lua: every worker starts a sweeper timer per provider (`sweep_every` seconds,
-- 30; 0 turns it off); the store lock lets one worker (of every nginx sharing the journal) at
-- a time work. It resolves payments stuck longer than `sweep_older_than` seconds (60) in sent,
-- redirect, pending or unknown with the provider's status call and finishes interrupted grants.
function _M.start_sweeper()
  local every = tonumber(config.sweep_every) or 30
  if every <= 0 then return end
  local older = tonumber(config.sweep_older_than) or 60
  for name in pairs(MAKERS) do
    local gw = _M.gateway(name)
    if gw then
      local ok, err = sweep.every(gw, every, { older_than = older, on_report = function(report, err)
        if not report then ngx.log(ngx.WARN, "shop: sweeper (", name, ") could not run: ", tostring(err)); return end
        for _, x in ipairs(report.resolved or {}) do
          local o = orders.by_reference(x.reference)
          if o then orders.event(o.id, "sweeper: " .. x.from .. " -> " .. x.to) end
        end
        if #report.resolved > 0 or #report.errors > 0 or report.granted > 0 then
          ngx.log(ngx.NOTICE, "shop: sweeper (", name, "): checked ", report.checked, ", resolved ", #report.resolved,
            ", granted ", report.granted, ", errors ", #report.errors)
        end
      end })
      if not ok then ngx.log(ngx.ERR, "shop: cannot start the sweeper for ", name, ": ", tostring(err)) end
    end
  end
end

-- Absolute URL of a path of this shop.
function _M.url(path) return config.base .. path end

-- The merchant reference of an order: unique across restarts of the shop (boot token).
function _M.reference(order_id) return "shop-" .. config.boot .. "-" .. order_id end

return _M
