-- A game server's purchase logic in plain Lua (no nginx): players buy items with a card
-- (Moka, 3D Secure); the server starts the payments, hears back from some buyers' browsers and
-- from Moka's notifications, and then checks every purchase still open in one batch
-- (paykit.batch: hundreds of status calls in flight at once). Each item is granted exactly
-- once, whoever reports the payment first: the return, the notification or the status check.
--
--   bin/paykit-sandbox start && lua5.4 examples/game_server.lua [N]     (N purchases, default 200)
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local paykit = require "paykit"
local core = require "paykit.core"
local sandbox = require "sandbox_buyer"

local N = tonumber(arg and arg[1]) or 200
local ITEMS = { { id = "dragon-egg", price = "27.50" }, { id = "gold-500", price = "4.99" }, { id = "sword", price = "12.00" } }

local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
                                base_url = sandbox.url() .. "/moka" })

---------------------------------------------------------------------------- the game's state
-- In a real server these are database rows; "grant once" is then a conditional UPDATE
-- (... SET granted = 1 WHERE ref = ? AND granted = 0) or a unique key on the grant.
local purchases = {} -- reference -> {player, item, status, granted, keep}
local order = {}     -- references in creation order
local inventory = {} -- player -> item -> count
local grants, reports = 0, { ["return"] = 0, notification = 0, status = 0 }

local function grant(p)
  if p.granted then return false end
  p.granted = true
  local inv = inventory[p.player] or {}
  inventory[p.player] = inv
  inv[p.item] = (inv[p.item] or 0) + 1
  grants = grants + 1
  return true
end

-- Every report of a payment goes through here, whichever way it came.
local function on_result(result, source)
  local p = result and purchases[result.reference]
  if not p then return end
  reports[source] = reports[source] + 1
  if result.status == "paid" then
    p.status = "paid"
    grant(p)
  elseif result.status == "failed" and p.status ~= "paid" then
    p.status = "failed"
  end
end

---------------------------------------------------------------------------- 1. players buy
-- Starting the payments is itself a batch: N 3D starts in flight together.
local tasks = {}
for i = 1, N do
  local item = ITEMS[(i - 1) % #ITEMS + 1]
  local p = { player = "player-" .. (i % 37), item = item.id, status = "pending", granted = false }
  local ref = "game-" .. core.random_hex(8)
  purchases[ref], order[i] = p, ref
  tasks[i] = function()
    return gw:purchase { reference = ref, amount = item.price, currency = "TL", client_ip = "127.0.0.1",
      redirect_url = "https://game.example/return", description = item.id,
      card = { holder = "Player " .. i, number = i % 5 == 0 and "4000000000100505" or "4111111111111111",
               exp_month = "12", exp_year = "2030", cvc = "123" } }
  end
end
local started, errs = paykit.batch(tasks, { max_in_flight = 64 })
local redirects = 0
for i = 1, N do
  if started[i] and started[i].status == "redirect" then
    purchases[order[i]].keep = started[i].keep
    redirects = redirects + 1
  else
    print("purchase " .. i .. " did not start: " .. tostring(errs[i]))
  end
end
print(string.format("created  %d purchases (%d waiting for the buyer's 3D page)", N, redirects))

---------------------------------------------------------------------------- 2. the buyers
-- 9 in 10 buyers finish the 3D page (the sandbox stands in for their clicks); the rest walk away.
local finished = {}
for i = 1, N do
  local p = purchases[order[i]]
  if p.keep and i % 10 ~= 0 then
    local code = started[i].redirect_url:match("threeDTrxCode=([%w%-]+)")
    finished[i] = sandbox.post("/moka/_sandbox/3d/complete", { threeDTrxCode = code, action = "approve" }).Fields
  end
end

-- Half of the browsers make it back to the game (the return), a third of the notifications
-- reach it (and some twice): every one of them is checked, none grants twice.
local lookup = function(other_trx_code)
  local p = purchases[other_trx_code]
  return p and p.keep and p.keep.code_for_hash
end
for i = 1, N do
  local fields = finished[i]
  if fields and i % 2 == 0 then
    local r, err = gw:complete(fields, purchases[order[i]].keep)
    if r then on_result(r, "return") else print("return refused: " .. tostring(err)) end
  end
  if fields and i % 3 == 0 then
    for _ = 1, (i % 9 == 0) and 2 or 1 do
      local r = gw:notification({ method = "POST", body = core.form_encode(fields) }, { lookup = lookup })
      on_result(r, "notification")
    end
  end
end

---------------------------------------------------------------------------- 3. the batch check
-- Every purchase is checked with Moka at once, also the ones already reported (a game server
-- would check only the open ones, plus a daily sweep of all).
tasks = {}
for i = 1, N do
  local ref = order[i]
  tasks[i] = function() return gw:status(ref) end
end
local clock = require("paykit.http").now
local t0 = clock()
local results
results, errs = paykit.batch(tasks, { max_in_flight = 64 })
local counts, in_order = { paid = 0, failed = 0, pending = 0 }, true
for i = 1, N do
  local r = results[i]
  if r then
    if r.reference ~= order[i] then in_order = false end
    counts[r.status] = (counts[r.status] or 0) + 1
    on_result(r, "status")
  else
    print("status " .. i .. " failed: " .. tostring(errs[i]))
  end
end
print(string.format("checked  %d purchases in one batch: %d paid, %d failed, %d pending (results in order: %s, %.2f s)",
  N, counts.paid, counts.failed, counts.pending, tostring(in_order), clock() - t0))

---------------------------------------------------------------------------- 4. the books
local paid, granted_once = 0, true
for _, ref in ipairs(order) do
  local p = purchases[ref]
  if p.status == "paid" then paid = paid + 1 end
  if (p.status == "paid") ~= p.granted then granted_once = false end
end
local items = 0
for _, inv in pairs(inventory) do for _, n in pairs(inv) do items = items + n end end
print(string.format("reports  %d returns, %d notifications, %d status checks",
  reports["return"], reports.notification, reports.status))
print(string.format("granted  %d items for %d paid purchases: %s", grants, paid,
  (granted_once and items == paid and grants == paid) and "each exactly once" or "MISMATCH"))
os.exit((in_order and granted_once and items == paid and grants == paid and paid > 0) and 0 or 1)
