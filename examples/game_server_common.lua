-- The game behind examples/game_server.lua (a plain 20 ms tick) and game_server_luv.lua (libuv):
-- players buy items with a card (Moka, 3D Secure) while the world keeps simulating. Every
-- paykit call runs on a paykit.loop and never blocks a tick: the purchases, the buyers' clicks
-- on the sandbox's 3D page, and the reconciling status checks. Returns and notifications
-- (HTTP, from the sandbox) go through the payment journal, which grants each item once,
-- whoever reports the payment first, on whichever game server (the journal on Redis).
local paykit = require "paykit"
local core = require "paykit.core"
local http = require "paykit.http"
local store_mod = require "paykit.store"
local journal = require "paykit.journal"
local sandbox = require "sandbox_buyer"

local G = {}

local ITEMS = { { id = "dragon-egg", price = "27.50" }, { id = "gold-500", price = "4.99" }, { id = "sword", price = "12.00" } }

function G.new(opts)
  local name, N = opts.name or "game", opts.purchases or 40
  local store = opts.redis_port and assert(store_mod.redis { port = opts.redis_port }) or store_mod.memory()
  local g = { name = name, N = N, ticks = 0, world = 0, purchases = {}, order = {}, started = 0, granted = 0,
              double = 0, reports = { ["return"] = 0, notification = 0, status = 0 }, store = store,
              lp = paykit.loop.new { max_in_flight = 32 }, buyer = http.new {} }
  -- the grant: "the database" says whether this payment's item was given already (a store key)
  local function grant(rec, token)
    local ok = store:add("game:granted:" .. rec.reference, token, 0)
    if not ok then g.double = g.double + 1; return true end
    g.granted = g.granted + 1
    return true
  end
  g.gw = journal.wrap(assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
    base_url = sandbox.url() .. "/moka" }), { store = store, prefix = "game", grant = grant })
  return setmetatable(g, { __index = G })
end

local function sandbox_call(g, path, body, done)
  g.lp:start(function()
    return g.buyer:request { method = "POST", url = sandbox.url() .. path, body = body, json = true }
  end, done)
end

-- Tells the sandbox where Moka's notifications go (one URL per dealer: the first server's).
function G:listen_notifications(url) sandbox_call(self, "/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = url }) end

local function buy(g, i)
  local item = ITEMS[(i - 1) % #ITEMS + 1]
  local ref = g.name .. "-" .. i .. "-" .. core.random_hex(4)
  local p = { ref = ref, i = i, item = item.id, born = g.ticks }
  g.purchases[ref], g.order[#g.order + 1] = p, p
  g.lp:start(function()
    return g.gw:purchase { reference = ref, amount = item.price, currency = "TL", client_ip = "127.0.0.1",
      redirect_url = "https://game.example/return", description = item.id,
      card = { holder = "Player " .. i, number = i % 5 == 0 and "4000000000100505" or "4111111111111111",
               exp_month = "12", exp_year = "2030", cvc = "123" } }
  end, function(r, err)
    if not r then p.state = "error"; print(g.name .. " purchase " .. i .. " did not start: " .. tostring(err)); return end
    p.state, p.code = r.status, r.redirect_url and r.redirect_url:match("threeDTrxCode=([%w%-]+)")
    p.click_at = g.ticks + 5 + i % 7 -- the buyer takes a few ticks on the 3D page
  end)
end

-- 9 in 10 buyers finish the 3D page (the sandbox stands in for their clicks); half of those
-- browsers come back to the game (the return); the notification comes anyway.
local function click(g, p)
  p.clicked = true
  if p.i % 10 == 0 then p.walked_away = true; return end
  sandbox_call(g, "/moka/_sandbox/3d/complete", { threeDTrxCode = p.code, action = "approve" }, function(res)
    local fields = res and res.json and res.json.Fields
    if fields and p.i % 2 == 0 then g:report(g.gw:complete(fields), "return") end
  end)
end

-- Every report of a payment (return, notification, status) lands here.
function G:report(r, source)
  local p = r and self.purchases[r.reference]
  if r and r.status then self.reports[source] = self.reports[source] + 1 end
  if p and (r.status == "paid" or r.status == "failed") then p.state = r.status end
end

-- A notification body from the HTTP listener; answers the reply body ("OK" once handled).
function G:notification(body)
  local r = self.gw:notification({ method = "POST", body = body })
  if r then self:report(r, "notification"); return "OK" end
  return "NO"
end

local function reconcile(g)
  for _, p in ipairs(g.order) do
    if p.clicked and not p.checking and p.state ~= "paid" and p.state ~= "failed" and g.ticks - p.born > 25 then
      p.checking = true
      g.lp:start(function() return g.gw:status(p.ref) end, function(r) p.checking = false; g:report(r, "status") end)
    end
  end
end

-- One tick of the game: the world, new purchases, the buyers, every second a reconcile pass.
function G:tick()
  self.ticks = self.ticks + 1
  for k = 1, 200 do self.world = (self.world * 31 + k) % 1000003 end -- the simulation
  if self.started < self.N and self.ticks % 2 == 0 then self.started = self.started + 1; buy(self, self.started) end
  for _, p in ipairs(self.order) do
    if p.code and not p.clicked and self.ticks >= p.click_at then click(self, p) end
  end
  if self.ticks % 50 == 0 then reconcile(self) end
end

-- Done once every purchase has an outcome, except the walked-away ones, and nothing is in flight.
function G:finished()
  if self.started < self.N or self.lp:pending() > 0 then return false end
  for _, p in ipairs(self.order) do
    if not p.walked_away and p.state ~= "paid" and p.state ~= "failed" and p.state ~= "error" then return false end
  end
  return true
end

function G:summary(worst_ms)
  local paid, failed, missing = 0, 0, 0
  for _, p in ipairs(self.order) do
    if p.state == "paid" then
      paid = paid + 1
      if not self.store:get("game:granted:" .. p.ref) then missing = missing + 1 end
    elseif p.state == "failed" then failed = failed + 1 end
  end
  print(string.format("%s: %d ticks (worst tick %.1f ms) while %d purchases ran: %d paid, %d failed, %d walked away",
    self.name, self.ticks, worst_ms or 0, self.N, paid, failed, self.N - paid - failed))
  print(string.format("%s: heard %d returns, %d notifications, %d status answers", self.name,
    self.reports["return"], self.reports.notification, self.reports.status))
  print(string.format("%s: granted %d items here; paid purchases without their item: %d; granted twice: %d",
    self.name, self.granted, missing, self.double))
  return missing == 0 and self.double == 0 and paid > 0
end

return G
