-- The Tinypay simulator: a fourth provider's server, written entirely under spec/ to prove
-- that the sandbox serves what is registered (paykit.kit.registry). Runs inside nginx, from
-- paykit.sandbox.util's dispatch; it shares no code with the client (spec/support/tinypay.lua)
-- and decides what is valid by its own rules.
--
--   POST /tinypay/payments  (X-Tiny-Key)  {amount, currency, reference, return_url, notify_url}
--        -> 201 {id, status = "created", amount, currency, reference, page_url}
--   GET  /tinypay/payments/<id>           -> 200 the payment | 404
--   GET  /tinypay/pay/<id>                the hosted page (Pay / Decline)
--   POST /tinypay/pay/<id>  outcome=paid|failed
--        -> the signed notice to notify_url (JSON body; X-Tiny-Signature: t=<unix>,k=<id>,v1=<hex>
--           over "<t>.<body>"), and a 302 to return_url?id=..&status=..&t=..&k=<id>&sig=<hex>
--           (the HMAC over the bytes before "&k=")
local core = require "paykit.core"
local cjson = require "cjson.safe"

local M = {}

M.API_KEY = "tiny-api-key"
M.NOTICE_KEYS = { [1] = "tiny-notice-key-1", [2] = "tiny-notice-key-2" }
M.KEY_ID = 2 -- the key that signs now (1 is the previous one, still accepted by shops)
M.CURRENCIES = { EUR = true, USD = true }

function M.sign(message, key_id)
  return core.hmac("sha256", M.NOTICE_KEYS[key_id or M.KEY_ID], message, "hex")
end

-- The payment as JSON text, its amount a bare number written from its decimal text.
local function payment_json(p, util)
  local text = cjson.encode { id = p.id, status = p.status, amount = "@amount@", currency = p.currency,
    reference = p.reference, page_url = util.base_url() .. "/tinypay/pay/" .. p.id }
  return (text:gsub('"@amount@"', p.amount))
end

local function refuse(util, status, code, message)
  return util.json(status, { error = { code = code, message = message } })
end

local function text_ok(v, max) return type(v) == "string" and #v >= 1 and #v <= max and not v:find("%c") end
local function http_ok(v) return type(v) == "string" and #v <= 2048 and v:find("^http://[%w%.%-]+[:%d]*/") ~= nil end

local function create(util, s)
  local key = ngx.req.get_headers()["x-tiny-key"]
  if key ~= M.API_KEY then return refuse(util, 401, "unauthorized", "unknown API key") end
  local t = util.json_decode_exact(util.body()) -- amounts as their literal text
  if type(t) ~= "table" then return refuse(util, 400, "bad_json", "the body must be a JSON object") end
  if type(t.amount) ~= "string" or not t.amount:find("^%d+%.%d%d$") or t.amount:find("^0+%.00$") then
    return refuse(util, 422, "invalid_amount", "amount must be a positive number with two decimals")
  end
  if not M.CURRENCIES[t.currency] then return refuse(util, 422, "invalid_currency", "currency must be EUR or USD") end
  if not text_ok(t.reference, 64) then return refuse(util, 422, "invalid_reference", "reference must be 1-64 characters") end
  if not http_ok(t.return_url) or not http_ok(t.notify_url) then
    return refuse(util, 422, "invalid_url", "return_url and notify_url must be http URLs")
  end
  local p = { id = "tp_" .. core.random_hex(8), status = "created", amount = t.amount, currency = t.currency,
    reference = t.reference, return_url = t.return_url, notify_url = t.notify_url }
  s.payments[p.id] = p
  return util.send(201, payment_json(p, util), "application/json")
end

local function page(util, p)
  if p.status ~= "created" then return util.page("Tinypay", "<p>This payment is " .. util.escape_html(p.status) .. ".</p>", 409) end
  local form = '<form method="post" action="/tinypay/pay/%s"><button name="outcome" value="%s">%s</button></form>'
  return util.page("Tinypay: pay " .. p.amount .. " " .. p.currency,
    string.format(form, util.escape_html(p.id), "paid", "Pay") .. string.format(form, util.escape_html(p.id), "failed", "Decline"))
end

local function decide(util, p)
  local outcome = (util.form() or {}).outcome
  if outcome ~= "paid" and outcome ~= "failed" then return util.send(400, "outcome must be paid or failed\n") end
  if p.status ~= "created" then return util.send(409, "already " .. p.status .. "\n") end
  p.status = outcome
  local t = tostring(ngx.time())
  local body = payment_json(p, util)
  util.notify { provider = "tinypay", url = p.notify_url, body = body,
    headers = { ["Content-Type"] = "application/json",
                ["X-Tiny-Signature"] = "t=" .. t .. ",k=" .. M.KEY_ID .. ",v1=" .. M.sign(t .. "." .. body) } }
  local signed = "id=" .. core.pct_encode(p.id) .. "&status=" .. outcome .. "&t=" .. t
  local back = signed .. "&k=" .. M.KEY_ID .. "&sig=" .. M.sign(signed)
  return util.redirect(p.return_url .. (p.return_url:find("?", 1, true) and "&" or "?") .. back)
end

function M.handle(util)
  local s = util.store("tinypay")
  s.payments = s.payments or {}
  local path, method = util.subpath("tinypay"), ngx.req.get_method()
  if path == "/payments" and method == "POST" then return create(util, s) end
  local id = path:match("^/payments/([%w_]+)$")
  if id and method == "GET" then
    if ngx.req.get_headers()["x-tiny-key"] ~= M.API_KEY then return refuse(util, 401, "unauthorized", "unknown API key") end
    local p = s.payments[id]
    if not p then return refuse(util, 404, "not_found", "no such payment") end
    return util.send(200, payment_json(p, util), "application/json")
  end
  id = path:match("^/pay/([%w_]+)$")
  local p = id and s.payments[id]
  if p and method == "GET" then return page(util, p) end
  if p and method == "POST" then return decide(util, p) end
  return util.send(404, "no such Tinypay page\n")
end

return M
