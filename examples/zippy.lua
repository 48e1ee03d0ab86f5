-- Zippy: a card payment on Zippy's hosted page, against the local sandbox.
--   bin/paykit-sandbox start && lua5.4 examples/zippy.lua      (or luajit examples/zippy.lua)
-- PAYKIT_SANDBOX_URL (default http://127.0.0.1:8790) says where the sandbox is.
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local paykit = require "paykit"
local core = require "paykit.core"
local sandbox = require "sandbox_buyer" -- stands in for the buyer paying on Zippy's page
local SANDBOX = sandbox.url()

-- The sandbox's OAuth consumer and notice keys; a real shop has its own.
local gw = paykit.zippy { consumer_key = "sandbox-key", consumer_secret = "sandbox-secret",
  notice_keys = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }, base_url = SANDBOX .. "/zippy" }

-- 0. Once per shop: a seller and a product (Zippy's control panel, done over the API here).
local seller, product = core.uuid4(), core.uuid4()
assert(gw:create_seller { uuid = seller, status = "ACTIVE", name = "Example shop", email = "shop@example.com" })
assert(gw:create_product { uuid = product, name = "Sword of dawn", external_id = "sword-1", seller_id = seller })

-- 1. The buyer pays: Zippy answers with its hosted payment page.
local shop = "https://shop.example"
local r, err = gw:purchase {
  product_id = product, amount = "0.99", currency = "EUR", pay_method = "CARD", carrier = "TMOBILE", region = 310,
  reference = "example-" .. core.random_hex(6),
  success_url = shop .. "/return/zippy/success", error_url = shop .. "/return/zippy/error",
  callback_success_url = shop .. "/notify/zippy/success", callback_error_url = shop .. "/notify/zippy/error",
}
if not r then print("purchase failed: " .. tostring(err)); os.exit(1) end
print("purchase: " .. r.status .. " -> send the buyer to Zippy's payment page")

-- 2. The buyer pays and comes back to success_url?<signed notice>; verify the raw query.
local paid = sandbox.post("/zippy/_sandbox/pay", { token = r.keep.token, outcome = "success" })
local done
done, err = gw:complete(paid.Location:match("%?(.*)$"), r.keep)
if not done then print("return refused: " .. tostring(err)); os.exit(1) end
print("return: " .. done.status .. " " .. done.amount .. " " .. done.currency .. " (reference " .. done.reference .. ")")

-- 3. Zippy also POSTs the notice to callback_success_url; a repeat is flagged.
local body = "signed_notice=" .. core.pct_encode(paid.signed_notice)
local n1, reply = gw:notification { method = "POST", body = body }
local n2 = gw:notification { method = "POST", body = body }
print("notification: " .. n1.status .. ", reply " .. reply.body .. "; again: duplicate=" .. tostring(n2.duplicate == true))

-- 4. Zippy has no status look-up: the signed notices are the only word on the outcome.
local _, serr = gw:status(r.reference)
print("status: " .. (serr and serr.code or "?") .. " (Zippy reports outcomes only by signed notice)")
os.exit(done.status == "paid" and n1.status == "paid" and n2.duplicate and 0 or 1)
