-- A scripted buyer for the example shop: plain HTTP with the core client (no redirect
-- following: every hop is taken by hand), the sandbox's `_sandbox` calls standing in for the
-- clicks on the providers' pages (examples/sandbox_buyer.lua, which must be on package.path).
-- Used by spec/shop_spec.lua and the demo.
--
--   local buyer = require("shop.buyer").new{ shop = "http://127.0.0.1:8791", sandbox = "http://127.0.0.1:8790" }
--   local trip = buyer:moka("approve")        -- {id=, order=, steps={...}, replay=function}
--   local trip = buyer:mocopay("send-sms")    -- or "cancel"
--   local trip = buyer:zippy("CARD", "success")  -- or "OPERATOR", "CC_ERROR" / "DIR_BILL_ERROR"
--   trip.replay()                             -- sends the provider's notification once more
local core = require "paykit.core"
local cjson = require "cjson.safe"
local sandbox = require "sandbox_buyer"

local _M = {}
local Buyer = {}
Buyer.__index = Buyer

_M.CARDS = { approve = "4111111111111111", decline = "4000000000100505", slow = "4000000000200008" }

function _M.new(opts)
  return setmetatable({ shop = opts.shop, sandbox = opts.sandbox,
    http = core.http_client { timeout = opts.timeout or 20000, follow_redirects = false } }, Buyer)
end

function Buyer:close() self.http:close() end

local function absolute(self, url)
  if url:sub(1, 1) == "/" then return self.shop .. url end
  return url
end

function Buyer:request(method, url, body)
  local res, err = self.http:request { method = method, url = absolute(self, url), body = body,
    headers = body and { ["Content-Type"] = "application/x-www-form-urlencoded" } or nil }
  if not res then error("buyer: " .. method .. " " .. url .. " failed: " .. tostring(err), 2) end
  return res
end

function Buyer:get(url) return self:request("GET", url) end
function Buyer:post(url, form) return self:request("POST", url, type(form) == "table" and core.form_encode(form) or form) end

function Buyer:admin(path, t)
  local json, err = sandbox.call(self.http, self.sandbox, path, t)
  if not json then error("buyer: " .. err, 2) end
  return json
end

function Buyer:order(id)
  local res = self:get("/order/" .. id .. ".json")
  return res.status == 200 and cjson.decode(res.body) or nil
end

-- POST /order/<id>/check: the shop asks the provider; returns the order afterwards.
function Buyer:check(id)
  self:post("/order/" .. id .. "/check", "")
  return self:order(id)
end

-- How many of an order's events start with `prefix`.
function _M.count(events, prefix)
  local n = 0
  for _, e in ipairs(events or {}) do if e:sub(1, #prefix) == prefix then n = n + 1 end end
  return n
end

-- Waits (up to `seconds`) until the order's history has an event starting with `prefix`.
function Buyer:wait_event(id, prefix, seconds)
  local deadline = os.time() + (seconds or 5)
  repeat
    local o = self:order(id)
    for _, e in ipairs(o and o.events or {}) do
      if e:sub(1, #prefix) == prefix then return o end
    end
    os.execute("sleep 0.05")
  until os.time() > deadline
  return self:order(id)
end

local function location(res, what)
  local loc = res.headers.location
  if not (res.status >= 300 and res.status < 400 and loc) then
    error("buyer: expected a redirect from " .. what .. ", got " .. res.status .. ": " .. tostring(res.body):sub(1, 300), 3)
  end
  return loc
end

-- The buyer's browser returns to the shop (GET, or POST of the fields) and lands on the order.
local function back(self, trip, res)
  trip.return_status = res.status
  local loc = location(res, "the shop's return")
  trip.id = trip.id or loc:match("/order/(%d+)")
  trip.order = self:order(trip.id)
  return trip
end

-- Moka: card form -> 3D page -> the buyer's click (approve | decline | error) -> return (POST).
function Buyer:moka(action, opts)
  opts = opts or {}
  local trip = { provider = "moka" }
  local res = self:post("/buy/moka", { card_number = opts.card or _M.CARDS.approve, card_holder = "Ali Yilmaz",
    exp_month = "12", exp_year = "2030", cvc = "123" })
  trip.buy_status = res.status
  if res.status ~= 302 then trip.body = res.body; return trip end
  local code = location(res, "/buy/moka"):match("threeDTrxCode=([%w%-]+)")
  local done = self:admin("/moka/_sandbox/3d/complete", { threeDTrxCode = code, action = action, code = opts.code })
  trip.id = done.RedirectUrl:match("/return/moka/(%d+)")
  trip.fields = done.Fields
  trip.replay = function() return self:post("/notify/moka", done.Fields) end
  return back(self, trip, self:post(done.RedirectUrl, done.Fields))
end

-- MoCoPay: checkout page -> "send-sms" | "cancel" | "expire" -> return (GET).
function Buyer:mocopay(action)
  local trip = { provider = "mocopay" }
  local res = self:post("/buy/mocopay", "")
  trip.buy_status = res.status
  if res.status ~= 302 then trip.body = res.body; return trip end
  local trn = location(res, "/buy/mocopay"):match("trn=([%w]+)")
  local done = self:admin("/mocopay/_sandbox/act", { trn = trn, action = action })
  trip.id = done.Location:match("/return/mocopay/(%d+)")
  trip.session_id = done.sessionId
  trip.replay = function()
    -- the sandbox's outbox has the notification as sent (a signed GET)
    local list = cjson.decode(self:get(self.sandbox .. "/_sandbox/outbox").body) or {}
    local ref = "referenceId=" .. (self:order(trip.id) or {}).reference .. "&"
    for i = #list, 1, -1 do
      if list[i].provider == "mocopay" and list[i].url:find(ref, 1, true) then return self:get(list[i].url) end
    end
    error("buyer: no MoCoPay notification for order " .. trip.id .. " in the sandbox's outbox")
  end
  return back(self, trip, self:get(done.Location))
end

-- Zippy: hosted page (CARD | OPERATOR) -> outcome ("success" or an error code) -> return (GET).
function Buyer:zippy(pay_method, outcome)
  local trip = { provider = "zippy" }
  local res = self:post("/buy/zippy", { pay_method = pay_method })
  trip.buy_status = res.status
  if res.status ~= 302 then trip.body = res.body; return trip end
  local token = location(res, "/buy/zippy"):match("tx=(%x+)")
  local done = self:admin("/zippy/_sandbox/pay", { token = token, outcome = outcome })
  trip.id = done.Location:match("/return/zippy/(%d+)/")
  local kind = outcome == "success" and "success" or "error"
  trip.replay = function()
    return self:post("/notify/zippy/" .. kind, "signed_notice=" .. core.pct_encode(done.signed_notice))
  end
  return back(self, trip, self:get(done.Location))
end

return _M
