-- Bad input to Moka's public calls: every row below is refused before any network call, with
-- a validation error naming the field. The gateway points at a real local server that counts
-- the requests it receives (spec/support/moka_stub.lua): it must count zero for every row, and
-- one for the valid control call at the end (so the counter itself is proven to count).
local paykit = require "paykit"
local errors = require "paykit.errors"
local stub = require "spec.support.moka_stub"

local PAN = "4111111111111111"

local function card(over)
  local c = { holder = "Ali Yilmaz", number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" }
  for k, v in pairs(over or {}) do if v == false then c[k] = nil else c[k] = v end end
  return c
end

-- the payment parameters, with over's keys replaced (false removes a key)
local function pay(over)
  local p = { amount = "27.50", card = card(), client_ip = "203.0.113.7", reference = "ORD-1",
              redirect_url = "https://shop.example/return?o=1" }
  for k, v in pairs(over or {}) do if v == false then p[k] = nil else p[k] = v end end
  return p
end

local function with(base, over)
  local p = {}
  for k, v in pairs(base) do p[k] = v end
  for k, v in pairs(over or {}) do if v == false then p[k] = nil else p[k] = v end end
  return p
end

local AFTER = { order_id = "ORDER-1", client_ip = "203.0.113.7" }
local HOLDER = string.rep("h", 101)

-- { field, call(s), argument(s) }: "pay3" runs the payment input through purchase (3D),
-- start_3d and pay; "pay" through purchase (3D) and start_3d only (3D-only fields).
local ROWS = {
  -- the payment call itself
  { "params", "pay3", "not a table" },
  { "amount", "pay3", pay { amount = false } },
  { "amount", "pay3", pay { amount = "" } },
  { "amount", "pay3", pay { amount = "abc" } },
  { "amount", "pay3", pay { amount = "-1.00" } },
  { "amount", "pay3", pay { amount = "1e3" } },
  { "amount", "pay3", pay { amount = "27.505" } },
  { "amount", "pay3", pay { amount = "0" } },
  { "amount", "pay3", pay { amount = "0.00" } },
  { "amount", "pay3", pay { amount = 27.5 } },
  { "amount", "pay3", pay { amount = {} } },
  { "amount", "pay3", pay { amount = true } },
  { "amount", "pay3", pay { amount = " 27.50" } },
  { "currency", "pay3", pay { currency = "JPY" } },
  { "currency", "pay3", pay { currency = 949 } },
  { "currency", "pay3", pay { currency = "" } },
  { "card", "pay3", pay { card = false } },
  { "card", "pay3", pay { card = PAN } },
  { "card_token", "pay3", pay { card_token = "0a1b-2c3d" } },
  { "card.number", "pay3", pay { card = card { number = false } } },
  { "card.number", "pay3", pay { card = card { number = 4111111111111111 } } },
  { "card.number", "pay3", pay { card = card { number = "4111x11111111111" } } },
  { "card.number", "pay3", pay { card = card { number = "41111111111" } } },
  { "card.number", "pay3", pay { card = card { number = "41111111111111111111" } } },
  { "card.number", "pay3", pay { card = card { number = "4111111111111112" } } },
  { "card.number", "pay3", pay { card = card { number = PAN .. "\n" } } },
  { "card.exp_month", "pay3", pay { card = card { exp_month = "13" } } },
  { "card.exp_month", "pay3", pay { card = card { exp_month = "0" } } },
  { "card.exp_month", "pay3", pay { card = card { exp_month = "ab" } } },
  { "card.exp_month", "pay3", pay { card = card { exp_month = false } } },
  { "card.exp_month", "pay3", pay { card = card { exp_month = "1.5" } } },
  { "card.exp_year", "pay3", pay { card = card { exp_year = "20301" } } },
  { "card.exp_year", "pay3", pay { card = card { exp_year = "2001" } } },
  { "card.exp_year", "pay3", pay { card = card { exp_year = false } } },
  { "card.exp_year", "pay3", pay { card = card { exp_year = "abcd" } } },
  { "card.cvc", "pay3", pay { card = card { cvc = "12" } } },
  { "card.cvc", "pay3", pay { card = card { cvc = "12345" } } },
  { "card.cvc", "pay3", pay { card = card { cvc = 123 } } },
  { "card.cvc", "pay3", pay { card = card { cvc = false } } },
  { "card.holder", "pay3", pay { card = card { holder = 5 } } },
  { "card.holder", "pay3", pay { card = card { holder = HOLDER } } },
  { "card_token", "pay3", pay { card = false, card_token = 5 } },
  { "card_token", "pay3", pay { card = false, card_token = "0a1b\n2c3d" } },
  { "card_token", "pay3", pay { card = false, card_token = string.rep("a", 65) } },
  { "three_d", "purchase", pay { three_d = "no" } },
  { "three_d", "purchase", pay { three_d = 0 } },
  { "tokenize", "pay3", pay { card = false, card_token = "0a1b-2c3d", tokenize = true } },
  { "installments", "pay3", pay { installments = 13 } },
  { "installments", "pay3", pay { installments = -1 } },
  { "installments", "pay3", pay { installments = 2.5 } },
  { "installments", "pay3", pay { installments = "3" } },
  { "installments", "pay3", pay { installments = 3, currency = "USD" } },
  { "client_ip", "pay3", pay { client_ip = false } },
  { "client_ip", "pay3", pay { client_ip = "999.999.999.999" } },
  { "client_ip", "pay3", pay { client_ip = "cafe" } },
  { "client_ip", "pay3", pay { client_ip = "..." } },
  { "client_ip", "pay3", pay { client_ip = "1.2.3" } },
  { "client_ip", "pay3", pay { client_ip = "01.2.3.4" } },
  { "client_ip", "pay3", pay { client_ip = "::1::" } },
  { "client_ip", "pay3", pay { client_ip = "203.0.113.7 " } },
  { "client_ip", "pay3", pay { client_ip = 3405803783 } },
  { "client_ip", "pay3", pay { client_ip = "gggg::1" } },
  { "client_ip", "pay3", pay { client_ip = "1:2:3:4:5:6:7:8:9" } },
  { "client_ip", "pay3", pay { client_ip = "" } },
  { "software", "pay3", pay { software = string.rep("s", 31) } },
  { "software", "pay3", pay { software = 5 } },
  { "description", "pay3", pay { description = string.rep("d", 201) } },
  { "description", "pay3", pay { description = "line\0nul" } },
  { "sub_merchant", "pay3", pay { sub_merchant = string.rep("m", 101) } },
  { "reference", "pay3", pay { reference = string.rep("r", 65) } },
  { "reference", "pay3", pay { reference = 5 } },
  { "reference", "pay3", pay { reference = "ORD\0-1" } },
  { "reference", "pay3", pay { reference = "ORD-1\r\nX: y" } },
  { "redirect_url", "pay", pay { redirect_url = false } },
  { "redirect_url", "pay", pay { redirect_url = "/relative/path" } },
  { "redirect_url", "pay", pay { redirect_url = "javascript:alert(1)" } },
  { "redirect_url", "pay", pay { redirect_url = "ftp://x.example/" } },
  { "redirect_type", "pay", pay { redirect_type = 2 } },
  { "integrator_id", "pay3", pay { integrator_id = "x" } },
  { "integrator_id", "pay3", pay { integrator_id = 1.5 } },
  { "integrator_id", "pay3", pay { integrator_id = 1 / 0 } },
  { "integrator_id", "pay3", pay { integrator_id = 256 } },
  { "integrator_id", "pay3", pay { integrator_id = -1 } },
  { "installments", "pay3", pay { installments = 0 / 0 } },
  { "installments", "pay3", pay { installments = 1 / 0 } },
  { "pre_auth", "pay3", pay { pre_auth = "no" } },
  { "pool", "pay3", pay { pool = "yes" } },
  { "tokenize", "pay3", pay { tokenize = 2 } },
  { "basket", "pay3", pay { basket = {} } },
  { "basket", "pay3", pay { basket = "P1" } },
  { "basket", "pay3", pay { basket = { { product_code = "A", unit_price = "20.00", quantity = 1 } } } },
  { "basket[1]", "pay3", pay { basket = { "A" } } },
  { "basket[1].product_code", "pay3", pay { basket = { { unit_price = "27.50" } } } },
  { "basket[1].unit_price", "pay3", pay { basket = { { product_code = "A", unit_price = "abc" } } } },
  { "basket[1].quantity", "pay3", pay { basket = { { product_code = "A", unit_price = "27.50", quantity = 0 } } } },
  { "basket[1].quantity", "pay3", pay { basket = { { product_code = "A", unit_price = "13.75", quantity = 1.5 } } } },
  { "buyer", "pay3", pay { buyer = "Ali" } },
  { "buyer.email", "pay3", pay { buyer = { email = 5 } } },
  { "customer", "pay3", pay { customer = "C1" } },
  { "customer.customer_code", "pay3", pay { customer = { customer_code = {} } } },
  -- an unknown field of the payment call's table is refused by its name (ISSUE9: not ignored)
  { "reurn_url", "pay3", pay { reurn_url = "https://shop.example/return" } },
  { "amout", "pay3", pay { amout = "27.50" } },
  { "cvc", "pay3", pay { cvc = "123" } },
  { "three_d", "start_3d", pay { three_d = true } },
  { "return_url", "start_3d", pay { return_url = "https://shop.example/return" } },
  -- after-sale calls
  { "params", "capture", "ORDER-1" },
  { "reference", "capture", { client_ip = "203.0.113.7" } },
  { "order_id", "capture", with(AFTER, { reference = "ORD-1" }) },
  { "order_id", "capture", with(AFTER, { order_id = 5 }) },
  { "amount", "capture", with(AFTER, { amount = "abc" }) },
  { "amount", "capture", with(AFTER, { amount = "-1.00" }) },
  { "client_ip", "capture", with(AFTER, { client_ip = "999.1.1.1" }) },
  { "client_ip", "capture", with(AFTER, { client_ip = false }) },
  { "currency", "capture", with(AFTER, { amount = "1.00", currency = "JPY" }) },
  { "reference", "void", { client_ip = "203.0.113.7" } },
  { "reason", "void", with(AFTER, { reason = 7 }) },
  { "reason", "void", with(AFTER, { reason = "2" }) },
  { "reason", "void", with(AFTER, { reason = 2.5 }) },
  { "client_ip", "void", with(AFTER, { client_ip = "cafe" }) },
  { "client_ip", "void", with(AFTER, { client_ip = false }) },
  { "amount", "refund", { order_id = "ORDER-1", amount = "1.234" } },
  { "reference", "refund", { reference = 5 } },
  { "order_id", "refund", { order_id = "ORDER-1", reference = "ORD-1" } },
  { "reference", "approve_pool", {} },
  { "params", "approve_pool", "ORDER-1" },
  { "order_id", "undo_pool", { order_id = {} } },
  { "reference", "undo_pool", { reference = "ORD\n1" } },
  -- queries
  { "reference", "payment_details", {} },
  { "payment_id", "payment_details", { payment_id = "1", reference = "ORD-1" } },
  { "params", "payment_details", 5 },
  { "payment_id", "payment_details", { payment_id = {} } },
  { "reference", "status", nil },
  { "reference", "status", "" },
  { "reference", "status", 5 },
  { "payment_id", "status", { payment_id = true } },
  { "bin", "bin_info", "52691" },
  { "bin", "bin_info", "526911123" },
  { "bin", "bin_info", 526911 },
  { "bin", "bin_info", {} },
  { "params", "installments", "526911" },
  { "bin", "installments", { bin = "abc", amount = "1.00" } },
  { "amount", "installments", { bin = "526911", amount = "x" } },
  { "currency", "installments", { bin = "526911", amount = "1.00", currency = "XXX" } },
  { "three_d", "installments", { bin = "526911", amount = "1.00", three_d = "no" } },
  -- stored cards
  { "params", "add_customer", "C1" },
  { "customer_code", "add_customer", {} },
  { "customer_code", "add_customer", { customer_code = 5 } },
  { "card.cvc", "add_customer", { customer_code = "C1", card = card() } },
  { "card.number", "add_customer", { customer_code = "C1", card = card { number = "1234", cvc = false } } },
  { "card_name", "add_customer", { customer_code = "C1", card = card { cvc = false }, card_name = string.rep("n", 51) } },
  { "email", "add_customer", { customer_code = "C1", email = {} } },
  { "customer_code", "add_card", { card = card { cvc = false } } },
  { "dealer_customer_id", "add_card", { dealer_customer_id = "1", customer_code = "C1", card = card { cvc = false } } },
  { "card", "add_card", { customer_code = "C1" } },
  { "card.exp_year", "add_card", { customer_code = "C1", card = card { cvc = false, exp_year = "2001" } } },
  { "customer_code", "list_cards", {} },
  { "params", "list_cards", "C1" },
  { "dealer_customer_id", "list_cards", { dealer_customer_id = {} } },
  { "card_token", "remove_card", "" },
  { "card_token", "remove_card", 5 },
  { "card_token", "remove_card", { card_token = {} } },
}

local CALLS = { pay3 = { "purchase", "start_3d", "pay" }, pay = { "purchase", "start_3d" } }

describe("moka bad input is refused before the network", function()
  local base, g
  local refused, total = 0, 0
  lazy_setup(function()
    base = stub.start()
    -- no instance client_ip: a call without one must be refused, not defaulted
    g = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
      base_url = base, retry = false, timeout = 5 }) -- ISSUE9: seconds (5000 is refused as milliseconds)
    stub.reset()
  end)
  lazy_teardown(function() stub.stop() end)

  for i, row in ipairs(ROWS) do
    local field, which, arg = row[1], row[2], row[3]
    for _, call in ipairs(CALLS[which] or { which }) do
      it(string.format("#%d %s refuses a bad %s", i, call, field), function()
        total = total + 1
        local before = stub.count()
        local ok, r, err = pcall(g[call], g, arg)
        assert.is_true(ok, "raised: " .. tostring(r))
        assert.is_nil(r)
        assert.is_true(errors.is(err), "not a paykit error: " .. tostring(err))
        assert.equal("validation", err.kind)
        assert.equal(field, err.field)
        assert.is_nil(tostring(err):find(PAN, 1, true))
        assert.equal(before, stub.count(), "a request reached the server")
        refused = refused + 1
      end)
    end
  end

  it("names the closest known field of an unknown one", function()
    local before = stub.count()
    local r, err = g:purchase(pay { reurn_url = "https://shop.example/return" })
    assert.is_nil(r)
    assert.equal("unknown_field", err.code)
    assert.matches("unknown field reurn_url in purchase; did you mean return_url?", err.message, 1, true)
    r, err = g:start_3d(pay { redirect_ur = "https://shop.example/return" })
    assert.is_nil(r)
    assert.matches("unknown field redirect_ur in start_3d; did you mean redirect_url?", err.message, 1, true)
    r, err = g:pay(pay { installment = 3 })
    assert.is_nil(r)
    assert.matches("unknown field installment in pay; did you mean installments?", err.message, 1, true)
    assert.equal(before, stub.count(), "a request reached the server")
  end)

  it("counts a valid call, so the zero counts above are real", function()
    local before = stub.count()
    g:pay(pay())
    assert.equal(before + 1, stub.count())
  end)

  it("has refused every row (" .. #ROWS .. " distinct inputs)", function()
    assert.is_true(#ROWS >= 90)
    print(string.format("\nmoka bad input: %d distinct inputs, %d calls tried, refused %d of %d", #ROWS, total, refused, total))
    assert.equal(total, refused)
  end)
end)
