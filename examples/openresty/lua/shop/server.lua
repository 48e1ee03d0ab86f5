-- Starts and stops the example shop in a real nginx (outside nginx: the launcher, specs, demo).
--
--   local server = require "shop.server"
--   local url = server.start{ port = 8791, sandbox = "http://127.0.0.1:8790", workers = 1,
--                             redis = "redis://127.0.0.1:6379" }   -- redis: optional (shop.store)
--   server.stop{ port = 8791 }
--
-- Against the sandbox it also prepares what a merchant sets up once in the providers' control
-- panels: Moka's notification URL for the dealer, and a Zippy seller with one product.
local nginx = require "paykit.sandbox.nginx"
local paykit = require "paykit"
local http = require "paykit.http"
local core = require "paykit.core"

local _M = { DEFAULT_PORT = 8791, DEFAULT_SANDBOX = "http://127.0.0.1:8790" }

local function here()
  return nginx.root() .. "/examples/openresty"
end

local function name_of(port) return "shop-" .. port end

local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close()
  return s
end

-- Registers the shop with the sandbox; returns the Zippy product's uuid.
function _M.prepare_sandbox(sandbox, base)
  local t = http.new { retry = false, timeout = 10 }
  local dealer = require("paykit.sandbox.moka").credentials[1]
  local res, err = t:request { method = "POST", url = sandbox .. "/moka/_sandbox/dealer", json = true,
    body = { DealerCode = dealer.DealerCode, NotifyUrl = base .. "/notify/moka" } }
  t:close()
  if not res or res.status ~= 200 then
    error("shop: cannot register the Moka notification URL with the sandbox at " .. sandbox .. ": "
      .. tostring(err or res.status), 0)
  end
  local zsb = require "paykit.sandbox.zippy"
  local zippy = assert(paykit.zippy { consumer_key = zsb.CONSUMER_KEY, consumer_secret = zsb.CONSUMER_SECRET,
                               notice_keys = zsb.NOTICE_KEYS, base_url = sandbox .. "/zippy", retry = false })
  local seller = core.uuid4()
  local ok, serr = zippy:create_seller { uuid = seller, status = "ACTIVE", name = "Example shop", email = "shop@example.com" }
  if not ok then error("shop: cannot create the Zippy seller: " .. tostring(serr), 0) end
  local product = core.uuid4()
  ok, serr = zippy:create_product { uuid = product, name = "Sword of dawn", external_id = "sword-1", seller_id = seller }
  if not ok then error("shop: cannot create the Zippy product: " .. tostring(serr), 0) end
  return product
end

-- start{port=, sandbox=, workers=, log_level=, redis=, sweep_every=, sweep_older_than=} -> the
-- shop's base URL. redis: a redis:// URL puts the payment journal on that Redis (default: the
-- PAYKIT_SHOP_REDIS environment variable; unset or "" = the `paykit_journal` shared dict).
-- sweep_every / sweep_older_than: the sweeper's period and age in seconds (30, 60; 0 = off).
function _M.start(opts)
  opts = opts or {}
  local redis = opts.redis
  if redis == nil then redis = os.getenv("PAYKIT_SHOP_REDIS") or "" end
  if redis ~= "" then
    local ok, err = require("shop.store").parse_redis_url(redis)
    if not ok then error("shop: " .. err, 0) end
    if redis:find('["\\\n]') then error("shop: the Redis URL must not contain quotes, backslashes or newlines", 0) end
  end
  local every, older = tonumber(opts.sweep_every or 30), tonumber(opts.sweep_older_than or 60)
  if not every or not older then error("shop: sweep_every and sweep_older_than must be numbers", 0) end
  local port = tonumber(opts.port) or _M.DEFAULT_PORT
  local sandbox = (opts.sandbox or _M.DEFAULT_SANDBOX):gsub("/+$", "")
  local base = "http://127.0.0.1:" .. port
  local product = _M.prepare_sandbox(sandbox, base)
  local root = nginx.root()
  local lp, lcp = nginx.lua_paths(root)
  nginx.start(name_of(port), read(here() .. "/nginx.conf"), {
    PORT = port, BASE = base, SANDBOX = sandbox, BOOT = core.random_hex(4), ZIPPY_PRODUCT = product,
    WORKERS = opts.workers or 1, LOG_LEVEL = opts.log_level or "warn",
    REDIS = redis, SWEEP_EVERY = every, SWEEP_OLDER_THAN = older,
    LUA_PATH = here() .. "/lua/?.lua;" .. here() .. "/lua/?/init.lua;" .. lp, LUA_CPATH = lcp,
  })
  return base
end

function _M.stop(opts)
  nginx.handle(name_of(tonumber(opts and opts.port) or _M.DEFAULT_PORT)):stop()
end

function _M.error_log(opts)
  return nginx.handle(name_of(tonumber(opts and opts.port) or _M.DEFAULT_PORT)):error_log()
end

return _M
