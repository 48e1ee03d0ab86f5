-- Helpers shared by the Zippy specs: a client on the sandbox, raw HTTP, fixtures, the buyer's
-- trip through the hosted pages.
local core = require "paykit.core"
local paykit = require "paykit"
local sandbox = require "paykit.sandbox.zippy"
local sb = require "spec.support.sandbox"

local M = { sandbox = sandbox }

function M.base() return sb.url() .. "/zippy" end

-- A client on the sandbox; extra options override.
function M.client(extra)
  local opts = {
    consumer_key = sandbox.CONSUMER_KEY, consumer_secret = sandbox.CONSUMER_SECRET,
    base_url = M.base(), notice_keys = { [0] = sandbox.NOTICE_KEYS[0], [1] = sandbox.NOTICE_KEYS[1] },
    retry = false,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return paykit.zippy(opts)
end

M.request = sb.request

function M.form_post(url, fields)
  return M.request("POST", url, core.form_encode(fields), { ["Content-Type"] = "application/x-www-form-urlencoded" })
end

function M.id(prefix) return (prefix or "z") .. "-" .. core.random_hex(6) end

-- A fresh ACTIVE seller and product; returns seller uuid, product uuid.
function M.product(z)
  local seller = M.id("seller")
  assert(z:create_seller { uuid = seller, status = "ACTIVE", name = "Test shop", email = "shop@example.org" })
  local product = core.uuid4()
  assert(z:create_product { uuid = product, name = "Thing", external_id = M.id("ext"), seller_id = seller })
  return seller, product
end

-- Transaction fields on the sandbox with sinks named after `tag`.
function M.tx_fields(product, tag, over)
  local sink = sb.url() .. "/_sink/"
  local t = {
    product_id = product, price = "0.89", currency = "EUR", pay_method = "CARD", carrier = "TMOBILE",
    region = 300, ext_transaction_id = M.id("order"),
    success_url = sink .. tag .. "-ok", error_url = sink .. tag .. "-err",
    callback_success_url = sink .. tag .. "-cbok", callback_error_url = sink .. tag .. "-cberr",
  }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

-- Waits for the sink to record something; returns the list.
function M.sink_log(name, want) return sb.sink_log(name, want or 1) end

-- The query string of a Location header.
function M.query_of(location) return (location:match("%?(.*)$")) end

-- The buyer pays on the card page; returns the final response (301).
function M.pay_by_card(redirect_url, number, expiry, cvc)
  local page = M.request("GET", redirect_url)
  assert(page.status == 200, "payment page answered " .. page.status)
  local token = redirect_url:match("tx=(%x+)")
  return M.form_post(M.base() .. "/payment/card", {
    tx = token, card_number = number, expiry = expiry or "12/39", cvc = cvc or "123", action = "pay" })
end

function M.pay_by_phone(redirect_url, phone, pin)
  local page = M.request("GET", redirect_url)
  assert(page.status == 200, "payment page answered " .. page.status)
  local token = redirect_url:match("tx=(%x+)")
  local res = M.form_post(M.base() .. "/payment/phone", { tx = token, phone = phone, action = "send" })
  if res.status ~= 200 or not pin then return res end
  return M.form_post(M.base() .. "/payment/pin", { tx = token, pin = pin, action = "confirm" })
end

return M
