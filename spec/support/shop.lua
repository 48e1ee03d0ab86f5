-- The example shop (examples/openresty) for the shop specs: its modules on package.path, a shop
-- in a real nginx with a scripted buyer for it, and what those specs read from an order's events.
--   local shops = require "spec.support.shop"
--   lazy_setup(function() sb.start(); shop, buyer = shops.start { port = 18850, workers = 4 } end)
--   lazy_teardown(function() shops.stop(18850, buyer); sb.stop() end)
local EXAMPLES = "./examples/openresty/lua/?.lua;./examples/openresty/lua/?/init.lua;./examples/?.lua;"
if not package.path:find(EXAMPLES, 1, true) then package.path = EXAMPLES .. package.path end

local sb = require "spec.support.sandbox"

local M = {}
M.server = require "shop.server"
M.buyers = require "shop.buyer"
M.count = M.buyers.count -- count(events, prefix): the events that start with prefix

-- How many reports (return, notification, status) of an order the journal saw first: the one
-- whose event is not "(duplicate)". Exactly one per payment with an outcome.
function M.firsts(events)
  local n = 0
  for _, e in ipairs(events or {}) do
    if (e:match("^return: ") or e:match("^notification: ") or e:match("^status: "))
      and (e:find(": paid", 1, true) or e:find(": failed", 1, true)) and not e:find("(duplicate)", 1, true) then
      n = n + 1
    end
  end
  return n
end

-- A shop (the options of shop.server.start; the sandbox is the specs' one, started by the
-- caller, unless opts.sandbox says otherwise) and a buyer for it: shop URL, buyer.
function M.start(opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.sandbox = o.sandbox or sb.url()
  local shop = M.server.start(o)
  return shop, M.buyers.new { shop = shop, sandbox = o.sandbox }
end

-- The end of what start started (buyer may be nil: start failed).
function M.stop(port, buyer)
  if buyer then buyer:close() end
  M.server.stop { port = port }
end

return M
