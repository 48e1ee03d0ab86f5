-- The provider benchmark's inputs and the local nginx's canned answers (test values only),
-- shared by bench/calls.lua (plain Lua clients), bench/nginx_client.lua (inside nginx) and
-- bench/bench.lua (the server's config).
local F = {}

F.moka_path = "/PaymentDealer/DoDirectPaymentThreeD"
F.moka_url = "https://3d.bench.example/acs?id=0001"
F.moka_payment = {
  amount = "27.50", currency = "TL",
  card = { holder = "Bench Mark", number = "4111111111111111", exp_month = "12", exp_year = "2030", cvc = "000" },
  client_ip = "127.0.0.1", redirect_url = "https://shop.bench.example/return?o=1",
  reference = "bench-0001-0002-0003", description = "paykit provider benchmark",
}
F.moka_answer = '{"Data":{"Url":"' .. F.moka_url .. '","CodeForHash":"0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"},'
  .. '"ResultCode":"Success","ResultMessage":"","Exception":null}'

F.mocopay_path = "/v1/payment/verifyPayment"
F.mocopay_session = "sess-bench-0001"
F.mocopay_answer = '{"sessionId":"sess-bench-0001","serviceCode":"bench","pid":"prod-1","type":"single",'
  .. '"lang":"en","series":1,"status":"PaymentComplete","currencyCode":"TRY","recurrent":false,'
  .. '"expiresIn":0,"timeInit":"2026-12-01T10:00:00Z","timeAuthorized":"2026-12-01T10:00:05Z",'
  .. '"timeLastSuccessfullPayment":"2026-12-01T10:00:06Z","chargedAmount":27.50,"failedAmount":0,'
  .. '"lastChargedAmount":27.50,"lastFailedAmount":0,"totalChargedAmount":27.50,"totalFailedAmount":0,'
  .. '"transactions":[],"endUser":{"userId":"u-1","phone":"905550000000","mcc":"286","mnc":"01"}}'

F.zippy_path = "/transactions"
F.zippy_token = "tok-bench-0001-0002-0003-0004"
F.zippy_transaction = {
  product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", price = "27.50", currency = "EUR", pay_method = "CARD", carrier = "bench",
  region = "286", ext_transaction_id = "bench-0001-0002-0003",
  success_url = "https://shop.bench.example/ok", error_url = "https://shop.bench.example/error",
  callback_success_url = "https://shop.bench.example/cb/ok", callback_error_url = "https://shop.bench.example/cb/error",
}
F.zippy_answer = '{"uuid":"6f1c0b6a-1f0e-4d0c-9b8a-7f6e5d4c3b2a","status":"CREATED","token":"' .. F.zippy_token .. '",'
  .. '"price":"27.50","currency":"EUR","ext_transaction_id":"bench-0001-0002-0003"}'

-- A wire transport (paykit.http's `wire`) answering every request with body at once: 200, JSON,
-- a fresh answer table per call (as a real wire's).
function F.canned(body)
  return { request = function() return { status = 200, headers = { ["Content-Type"] = "application/json" }, body = body } end }
end

-- nginx locations answering each provider's canned answer with fixed bytes (`return 200`: no
-- Lua in the server per request), for a server block whose ${MOKA}, ${MOCOPAY} and ${ZIPPY}
-- are the paths (bench/batch_cost.lua, bench/whole_cost.lua)
F.fixed_locations = table.concat({
  "location = ${MOKA} { default_type application/json; return 200 '" .. F.moka_answer .. "'; }",
  "location = ${MOCOPAY} { default_type application/json; return 200 '" .. F.mocopay_answer .. "'; }",
  "location = ${ZIPPY} { default_type application/json; return 200 '" .. F.zippy_answer .. "'; }",
}, "\n    ")

return F
