-- Moka: a card payment with 3D Secure, against the local sandbox.
--   bin/paykit-sandbox start && lua5.4 examples/moka.lua      (or luajit examples/moka.lua)
-- PAYKIT_SANDBOX_URL (default http://127.0.0.1:8790) says where the sandbox is.
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local paykit = require "paykit"
local sandbox = require "sandbox_buyer" -- stands in for the buyer's clicks on the 3D page
local SANDBOX = sandbox.url()

-- Credentials of the sandbox's dealer; a real shop has its own (and env = "production").
local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
                                base_url = SANDBOX .. "/moka" })

-- 1. The buyer pays: Moka answers with the 3D page to send the buyer to.
local r, err = gw:purchase {
  reference = "example-" .. require("paykit.core").random_hex(6), amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
  description = "Dragon egg", redirect_url = "https://shop.example/return/moka",
  card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2030", cvc = "123" },
}
if not r then print("purchase failed: " .. tostring(err)); os.exit(1) end
print("purchase: " .. r.status .. " -> send the buyer to the 3D page (" .. r.method .. ")")
-- Keep r.keep with the order (it holds CodeForHash, needed to check the buyer's return).

-- 2. The buyer approves on the 3D page and comes back to redirect_url with a POSTed form.
local form = sandbox.post("/moka/_sandbox/3d/complete",
  { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" }).Fields
local done
done, err = gw:complete(form, r.keep)
if not done then print("return refused: " .. tostring(err)); os.exit(1) end
print("return: " .. done.status .. " " .. done.amount .. " " .. done.currency .. " (reference " .. done.reference .. ")")

-- 3. Ask Moka at any time.
local st
st, err = gw:status(r.reference)
if not st then print("status failed: " .. tostring(err)); os.exit(1) end
print("status: " .. st.status)
os.exit(done.status == "paid" and st.status == "paid" and 0 or 1)
