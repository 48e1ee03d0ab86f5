-- The shop's HTML. Every value is escaped; element ids are stable (browser tests click them).
-- No page ever shows a card number (except the sandbox's public test card pre-filled on the
-- product page), a CVC or a credential.
local _M = {}

local function esc(s)
  return (tostring(s == nil and "" or s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end
_M.esc = esc

function _M.send(status, title, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print("<!doctype html><html><head><meta charset=\"utf-8\"><title>", esc(title), "</title>",
    "<style>body{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em}",
    "section{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}",
    "label{display:inline-block;margin:.2em .6em .2em 0}button{padding:.4em 1em}</style></head><body>",
    "<p><a href=\"/\">Example shop</a> (paykit sandbox)</p><h1>", esc(title), "</h1>", body, "</body></html>")
  return ngx.exit(status)
end

local function input(id, name, value, size)
  return string.format('<label>%s <input id="%s" name="%s" value="%s" size="%d" autocomplete="off"></label>',
    esc(name:gsub("_", " ")), id, name, esc(value), size)
end

function _M.index(products)
  local m, z = products.moka, products.zippy
  local body = table.concat {
    '<section><h2>', esc(m.name), ' (', esc(m.amount), ' ', esc(m.currency), ', card via Moka)</h2>',
    '<form method="post" action="/buy/moka">',
    input("card-number", "card_number", "4111111111111111", 19), input("card-holder", "card_holder", "Ali Yilmaz", 16),
    input("exp-month", "exp_month", "12", 2), input("exp-year", "exp_year", "2030", 4), input("cvc", "cvc", "123", 4),
    '<br><button id="buy-moka" type="submit">Buy with card</button></form></section>',
    '<section><h2>', esc(products.mocopay.name), ' (pay by phone via MoCoPay)</h2>',
    '<form method="post" action="/buy/mocopay"><button id="buy-mocopay" type="submit">Buy with MoCoPay</button></form></section>',
    '<section><h2>', esc(z.name), ' (', esc(z.amount), ' ', esc(z.currency), ' via Zippy)</h2>',
    '<form method="post" action="/buy/zippy"><input type="hidden" name="pay_method" value="CARD">',
    '<button id="buy-zippy-card" type="submit">Pay by card</button></form>',
    '<form method="post" action="/buy/zippy"><input type="hidden" name="pay_method" value="OPERATOR">',
    '<button id="buy-zippy-operator" type="submit">Pay with phone bill</button></form></section>',
  }
  return _M.send(200, "Example shop", body)
end

function _M.order(o, can_check)
  local events = {}
  for i, e in ipairs(o.events) do events[i] = "<li>" .. esc(e) .. "</li>" end
  local body = table.concat {
    '<p>Order <span id="order-id">', esc(o.id), '</span>: ', esc(o.product), ' via ', esc(o.provider), '</p>',
    '<p>Status: <strong id="order-status">', esc(o.status), '</strong></p>',
    '<p>Item granted: <strong id="granted">', esc(o.granted), '</strong> time(s)</p>',
    '<p>Payment journal (', esc(o.journal.store), '): <strong id="journal-state">',
    esc(o.journal.state or o.journal.error or "no record"), '</strong>',
    o.journal.grant and (', grant <strong id="journal-grant">' .. esc(o.journal.grant) .. '</strong>') or '', '</p>',
    '<ol id="events">', table.concat(events), '</ol>',
    can_check and ('<form method="post" action="/order/' .. esc(o.id) .. '/check">'
      .. '<button id="check-status" type="submit">Check status with the provider</button></form>') or '',
  }
  return _M.send(200, "Order " .. o.id, body)
end

-- An error page: what went wrong in general terms, never the provider's raw answer. A client
-- that asks for JSON (Accept: application/json) gets {"error": detail, "code": code}.
function _M.error(status, title, detail, code)
  if (ngx.var.http_accept or ""):find("application/json", 1, true) then
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(require("cjson.safe").encode { error = detail, code = code })
    return ngx.exit(status)
  end
  return _M.send(status, title, '<p id="error">' .. esc(detail) .. '</p>'
    .. (code and ('<p>Code: <code id="error-code">' .. esc(code) .. '</code></p>') or '')
    .. '<p><a id="back" href="/">Back to the shop</a></p>')
end

-- A self-submitting form, for providers whose redirect is a POST.
function _M.autopost(url, form)
  local fields = {}
  for k, v in pairs(form or {}) do
    if type(k) == "number" and type(v) == "table" then k, v = v[1], v[2] end
    fields[#fields + 1] = string.format('<input type="hidden" name="%s" value="%s">', esc(k), esc(v))
  end
  return _M.send(200, "Redirecting to the payment page", string.format(
    '<form id="go" method="post" action="%s">%s<button type="submit">Continue</button></form>'
    .. '<script>document.getElementById("go").submit()</script>', esc(url), table.concat(fields)))
end

return _M
