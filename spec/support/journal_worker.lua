-- A separate Lua process for the journal's multi-process specs (spec/journal_procs_spec.lua).
--   lua5.4 spec/support/journal_worker.lua complete <sandbox> <redis port> <password> <payments.json> <grants> <go> [reverse]
--     waits for the file <go>, then completes (return + notification) every payment listed
--     (last first with "reverse"),
--     granting through the journal; a grant appends "<token>\n" to <grants>. Prints
--     "firsts=N" (results with duplicate = false).
--   lua5.4 spec/support/journal_worker.lua die <sandbox> <redis port> <password> <reference> <marker>
--     a direct Moka payment that stops (sleeps) after Moka answered and before reading the
--     answer, once it has written <marker>: the spec kills it there with kill -9.
--   lua5.4 spec/support/journal_worker.lua purchase <sandbox> <redis port> <password> <reference> <go>
--     waits for <go>, then purchases (3D Moka) with that reference; prints "sent=N" (requests
--     this process sent) and "outcome=redirect|replayed|<error code>".
--   lua5.4 spec/support/journal_worker.lua die_in_grant <sandbox> <redis port> <password> <payment.json> <marker>
--     completes the payment with a 3 s lease; its grant writes "<token>\n" to <marker> and
--     sleeps (the spec kills it there: claimed, never confirmed).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
local paykit = require "paykit"
local core = require "paykit.core"
local cjson = require "cjson"
local journal = require "paykit.journal"
local store = require "paykit.store"

local mode, sandbox, port, password = arg[1], arg[2], tonumber(arg[3]), arg[4]
local s = assert(store.redis { port = port, password = password, timeout = 5000 })

local function moka(hooks)
  return paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
    base_url = sandbox .. "/moka", hooks = hooks }
end

if mode == "complete" then
  local payments_file, grants_file, go = arg[5], arg[6], arg[7]
  local f = assert(io.open(payments_file)); local payments = cjson.decode(f:read("*a")); f:close()
  if arg[8] == "reverse" then
    local r = {}
    for i = #payments, 1, -1 do r[#r + 1] = payments[i] end
    payments = r
  end
  local j = journal.new { store = s }
  local jg = j:wrap(moka(), { grant = function(_, token)
    local g = assert(io.open(grants_file, "a")); g:write(token, "\n"); g:close()
    return true
  end })
  while not io.open(go) do core.sleep(0.01) end
  local firsts = 0
  for _, p in ipairs(payments) do
    local a = assert(jg:complete(p.fields))
    local b = assert(jg:notification { method = "POST", body = core.form_encode(p.fields) })
    for _, r in ipairs { a, b } do
      assert(r.status == "paid", "not paid: " .. tostring(r.status))
      if r.duplicate == false then firsts = firsts + 1 end
    end
  end
  print("firsts=" .. firsts)
elseif mode == "die" then
  local reference, marker = arg[5], arg[6]
  local j = journal.new { store = s }
  local jg = j:wrap(moka { after = function(ctx)
    if ctx.op == "moka.pay" then
      local m = assert(io.open(marker, "w")); m:write("answered\n"); m:close()
      core.sleep(3600) -- killed here
    end
  end })
  jg:purchase { reference = reference, amount = "12.34", currency = "TL", client_ip = "127.0.0.1", three_d = false,
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
  print("not killed")
elseif mode == "purchase" then
  local reference, go = arg[5], arg[6]
  local sent = 0
  local jg = journal.new { store = s }:wrap(moka { before = function() sent = sent + 1 end })
  while not io.open(go) do core.sleep(0.002) end
  local r, err = jg:purchase { reference = reference, amount = "8.00", currency = "TL", client_ip = "127.0.0.1",
    return_url = "https://shop.example/back",
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
  print("sent=" .. sent)
  print("outcome=" .. (r and (r.journal.replayed and "replayed" or r.status) or err.code))
elseif mode == "die_in_grant" then
  local payment_file, marker = arg[5], arg[6]
  local f = assert(io.open(payment_file)); local p = cjson.decode(f:read("*a")); f:close()
  local j = journal.new { store = s, lease = 3 }
  local jg = j:wrap(moka(), { grant = function(_, token)
    local m = assert(io.open(marker, "w")); m:write(token, "\n"); m:close()
    core.sleep(3600) -- killed here, between claim and confirm
  end })
  jg:complete(p.fields)
  print("not killed")
end
