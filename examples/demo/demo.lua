-- The demo's buyer: one purchase after another through the example shop, a line per trip.
--   lua5.4 examples/demo/demo.lua --shop http://127.0.0.1:8791 --sandbox http://127.0.0.1:8790
-- (examples/demo/run starts and stops the servers around it). Exits 0 only if every step
-- went as expected.
local root = (arg[0]:match("^(.*)/examples/demo/[^/]*$") or ".")
package.path = table.concat({ root .. "/examples/openresty/lua/?.lua", root .. "/examples/openresty/lua/?/init.lua",
  root .. "/examples/?.lua", root .. "/lua/?.lua", root .. "/lua/?/init.lua", package.path }, ";")
package.cpath = root .. "/build/lua5.4/?.so;" .. package.cpath

local opts = {}
for i = 1, #arg - 1, 2 do opts[arg[i]:gsub("^%-%-", "")] = arg[i + 1] end
local buyers = require "shop.buyer"
local buyer = buyers.new { shop = opts.shop or "http://127.0.0.1:8791", sandbox = opts.sandbox or "http://127.0.0.1:8790" }
local count = buyers.count

local failures = 0
local journal_store

-- One trip: `go` walks it, `expect` is "paid" or "failed"; `replay` also repeats the notification.
local function trip(provider, label, path, expect, go, replay)
  local ok, t = pcall(go)
  if not ok and tostring(t):find("interrupted!", 1, true) then print("\ninterrupted"); os.exit(130) end
  local line = string.format("%-8s %-9s", provider, label)
  if not ok or not t.order then
    failures = failures + 1
    print(line .. "FAILED: " .. tostring(ok and ("HTTP " .. tostring(t.buy_status)) or t))
    return
  end
  local o = t.order
  local want_granted = expect == "paid" and 1 or 0
  -- the provider's notification can race the return: whichever comes first grants (under the
  -- journal's lease), so give a grant in progress a moment to finish before judging
  for _ = 1, 60 do
    if o.granted >= want_granted then break end
    os.execute("sleep 0.05")
    o = buyer:order(t.id)
  end
  local good = o.status == expect and o.granted == want_granted
  line = line .. string.format("order %-3s -> %s -> return: %s, granted %dx", t.id, path, o.status, o.granted)
  if replay then
    o = buyer:wait_event(t.id, "notification", 5)
    local tag = "notification: " .. expect .. " (duplicate)"
    local before = count(o.events, tag)
    local r = t.replay()
    for _ = 1, 60 do
      o = buyer:order(t.id)
      if count(o.events, tag) > before then break end
      os.execute("sleep 0.05")
    end
    local dup = count(o.events, tag) > before
    line = line .. string.format("; notification again: %s, granted %dx", dup and "duplicate" or "NOT flagged", o.granted)
    good = good and r.status == 200 and dup and o.granted == want_granted
  end
  -- what the payment journal holds: the payment's state and whether its grant is done, and how
  -- often the grant hook ran (once for a paid payment, whatever was repeated)
  o = buyer:order(t.id)
  local j = o.journal or {}
  line = line .. string.format("; journal: %s, grant %s, hook ran %dx", tostring(j.state), tostring(j.grant), o.grant_calls or 0)
  good = good and j.state == expect and j.grant == (expect == "paid" and "done" or "none") and o.grant_calls == want_granted
  journal_store = j.store or journal_store
  if not good then failures = failures + 1 end
  print(line .. (good and "" or "   <-- NOT AS EXPECTED"))
end

local CARDS = buyers.CARDS
trip("moka", "approved", "3D page -> approve", "paid", function() return buyer:moka("approve") end, true)
trip("moka", "declined", "3D page -> bank declines (005)", "failed",
  function() return buyer:moka("approve", { card = CARDS.decline }) end, true)
trip("mocopay", "approved", "checkout -> SMS sent", "paid", function() return buyer:mocopay("send-sms") end, true)
trip("mocopay", "declined", "checkout -> cancel", "failed", function() return buyer:mocopay("cancel") end)
trip("zippy", "approved", "card page -> pay", "paid", function() return buyer:zippy("CARD", "success") end, true)
trip("zippy", "declined", "card page -> CC_ERROR", "failed", function() return buyer:zippy("CARD", "CC_ERROR") end, true)
trip("zippy", "approved", "phone bill -> PIN ok", "paid", function() return buyer:zippy("OPERATOR", "success") end)
buyer:close()

print()
print("payment journal: " .. tostring(journal_store) .. " (every return, notification and status check went through it;"
  .. " a repeat is flagged duplicate and grants nothing)")
if failures == 0 then
  print("demo: every step went as expected")
else
  print(string.format("demo: %d trip(s) did not go as expected", failures))
end
os.exit(failures == 0 and 0 or 1)
