-- MoCoPay: pay by phone (SMS / operator billing), against the local sandbox.
--   bin/paykit-sandbox start && lua5.4 examples/mocopay.lua    (or luajit examples/mocopay.lua)
-- PAYKIT_SANDBOX_URL (default http://127.0.0.1:8790) says where the sandbox is.
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local paykit = require "paykit"
local sandbox = require "sandbox_buyer" -- stands in for the buyer sending the SMS
local SANDBOX = sandbox.url()

-- The sandbox's API key and secret; a real shop has its own.
local gw = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = SANDBOX .. "/mocopay" }

-- 1. Start the payment of a product (pid); MoCoPay prices it and hosts the payment page.
local r, err = gw:purchase { pid = "12000", reference = "example-" .. require("paykit.core").random_hex(6),
                             client_ip = "127.0.0.1", return_url = "https://shop.example/return/mocopay" }
if not r then print("purchase failed: " .. tostring(err)); os.exit(1) end
print("purchase: " .. r.status .. " -> send the buyer to the checkout page")
-- Keep r.keep with the order: the return is only trusted when it matches it.

-- 2. The buyer sends the SMS and is sent back to return_url?sid=..&status=PaymentComplete...
local back = sandbox.post("/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" })
local query = back.Location:match("%?(.*)$")
local done
done, err = gw:complete(query, r.keep) -- confirmed with verifyPayment before it says "paid"
if not done then print("return refused: " .. tostring(err)); os.exit(1) end
print("return: " .. done.status .. " (session " .. done.session_id .. ")")

-- 3. Ask MoCoPay at any time, by session id.
local st
st, err = gw:status(done.session_id)
if not st then print("status failed: " .. tostring(err)); os.exit(1) end
print("status: " .. st.status .. (st.amount and (" " .. st.amount .. " " .. tostring(st.currency)) or ""))
os.exit(done.status == "paid" and st.status == "paid" and 0 or 1)
