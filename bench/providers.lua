-- The whole provider calls of the benchmark, shared by bench/calls.lua and bench/nginx_client.lua.
--   local call = require("bench.providers").make("moka", "http://127.0.0.1:18760", cafile)
--   call() -> true when the provider layer mapped the canned answer to the expected result
-- (the second value: the provider instance the call uses)
local fixtures = require "bench.fixtures"
local M = {}

function M.make(scenario, base, cafile)
  local common = { cafile = cafile, retry = false }
  if scenario == "moka" then
    local o = { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
      base_url = base }
    for k, v in pairs(common) do o[k] = v end
    local gw = assert(require("paykit.providers.moka").new(o))
    local p = fixtures.moka_payment
    return function()
      local r = gw:start_3d(p)
      return r ~= nil and r.status == "redirect" and r.redirect_url == fixtures.moka_url
    end, gw
  elseif scenario == "mocopay" then
    -- the canned answer's amounts are major units ("chargedAmount":27.50)
    local o = { api_key = "bench-key", api_secret = "bench-secret-not-secret", base_url = base, amount_unit = "major" }
    for k, v in pairs(common) do o[k] = v end
    local c = assert(require("paykit.providers.mocopay").new(o))
    return function()
      local r = c:verify_payment(fixtures.mocopay_session)
      return r ~= nil and r.status == "paid" and r.amount == "27.50"
    end, c
  elseif scenario == "zippy" then
    local o = { consumer_key = "bench-consumer", consumer_secret = "bench-consumer-secret", base_url = base,
      notice_keys = { [0] = "bench-notice-key" },
      nonce = function() return "0123456789abcdef0123456789abcdef" end, clock = function() return 1764600000 end }
    for k, v in pairs(common) do o[k] = v end
    local z = assert(require("paykit.providers.zippy").new(o))
    local t = fixtures.zippy_transaction
    return function()
      local r = z:create_transaction(t)
      return type(r) == "table" and r.token == fixtures.zippy_token
    end, z
  end
  return nil
end

return M
