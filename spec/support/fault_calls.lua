-- The provider calls the fault specs aim at the fault server: each provider's charging calls
-- and one idempotent call. The same module runs under busted (libcurl, Lua 5.4 and LuaJIT) and
-- inside nginx (cosocket), so both paths make exactly the same calls.
--   calls.list                          {{id, provider, charging}, ...}
--   calls.run(id, base_url, transport)  -> {ok = true} | {ok = false, kind, code, retryable, message}
-- transport: options for the gateway's transport (timeout, retry, cafile, ...).
local paykit = require "paykit"

local _M = {}

local PRODUCT = "0b7a8f7e-2c4d-4e6f-8a9b-1c2d3e4f5a6b"
local CARD = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" }

local function with(opts, transport)
  for k, v in pairs(transport or {}) do opts[k] = v end
  return opts
end

local function moka(base, t)
  return assert(paykit.moka(with({ dealer_code = "1730", username = "fault", password = "fault-pass",
    base_url = base, client_ip = "203.0.113.7" }, t)))
end
local function mocopay(base, t)
  return assert(paykit.mocopay(with({ api_key = "fault-app", api_secret = "fault-secret", base_url = base }, t)))
end
local function zippy(base, t)
  return assert(paykit.zippy(with({ consumer_key = "fault-key", consumer_secret = "fault-secret",
    notice_keys = { [0] = "fault-notice-0" }, base_url = base }, t)))
end

local function pay_params(three_d)
  return { reference = "ORD-fault-1", amount = "27.50", currency = "TL", card = CARD,
    redirect_url = three_d and "https://shop.example/back?o=1" or nil }
end

_M.list = {
  { id = "moka.pay", provider = "moka", charging = true,
    make = moka, call = function(g) return g:pay(pay_params(false)) end },
  { id = "moka.start_3d", provider = "moka", charging = true,
    make = moka, call = function(g) return g:start_3d(pay_params(true)) end },
  { id = "moka.status", provider = "moka", charging = false,
    make = moka, call = function(g) return g:status("ORD-fault-1") end },
  -- initPayment is a GET without a body: as a charging call the libcurl transport gives it a
  -- connection of its own (never a reused one)
  { id = "mocopay.purchase", provider = "mocopay", charging = true, bodyless = true,
    make = mocopay, call = function(g)
      return g:purchase { pid = "12000", reference = "ORD-fault-2", client_ip = "127.0.0.1",
        return_url = "https://shop.example/back?o=2", notify_url = "https://shop.example/notify" }
    end },
  { id = "mocopay.status", provider = "mocopay", charging = false,
    make = mocopay, call = function(g) return g:status("session-fault-1") end },
  { id = "zippy.purchase", provider = "zippy", charging = true,
    make = zippy, call = function(g)
      return g:purchase { product_id = PRODUCT, reference = "ORD-fault-3", amount = "0.99", currency = "EUR",
        pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = "https://shop.example/back?o=3",
        notify_url = "https://shop.example/notify" }
    end },
  { id = "zippy.get_product", provider = "zippy", charging = false,
    make = zippy, call = function(g) return g:get_product(PRODUCT) end },
}
_M.by_id = {}
for _, c in ipairs(_M.list) do _M.by_id[c.id] = c end

local function outcome(r, err)
  if r then return { ok = true, status = type(r) == "table" and r.status or nil } end
  if type(err) ~= "table" then return { ok = false, kind = "raised", message = tostring(err) } end
  local msg = tostring(err.message)
  -- what paykit.http's message says about the request (transport and timeout errors)
  local maybe_sent = nil
  if msg:find("the request may have reached the provider", 1, true) then maybe_sent = true
  elseif msg:find("the request never reached the provider", 1, true) then maybe_sent = false end
  return { ok = false, kind = err.kind, code = err.code, retryable = err.retryable, message = err.message,
    maybe_sent = maybe_sent }
end

-- Which C client of the gateway's transport served its calls: "wire", "curl" (libcurl) or nil
-- (none: inside nginx, cosockets), "both" when each served one.
local function client_of(g)
  local t = g.http or {}
  if t.wire and t.client then return "both" end
  if t.wire then return "wire" end
  if t.client then return "curl" end
  return nil
end

-- One call on a new gateway; with times = 2 the call is made twice on the same gateway (the
-- same keep-alive connection; pause seconds before each) and the outcomes of both are returned.
function _M.run(id, base, transport, times, pause)
  local c = assert(_M.by_id[id], "no such call " .. tostring(id))
  local g = c.make(base, transport)
  local out = {}
  for i = 1, times or 1 do
    if pause then
      local ngx = rawget(_G, "ngx")
      if ngx and ngx.sleep then ngx.sleep(pause) else require("paykit.core").sleep(pause) end
    end
    local ok, r, err = pcall(c.call, g)
    out[i] = ok and outcome(r, err) or { ok = false, kind = "raised", message = tostring(r) }
    out[i].client = client_of(g)
  end
  return out
end

return _M
