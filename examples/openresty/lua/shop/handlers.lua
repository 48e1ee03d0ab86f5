-- The shop's request handlers (content_by_lua). Each one is: read the request, one paykit
-- call, record the outcome in the shared dict, answer.
local cjson = require "cjson.safe"
local shop = require "shop"
local orders = require "shop.orders"
local pages = require "shop.pages"
local pay = require "shop.pay"

local _M = {}

-- What an error may show: its kind and code (paykit errors never carry secrets; the
-- provider's raw answer stays in the log, scrubbed).
local function describe(err)
  if type(err) == "table" and err.kind then
    return err.kind .. " error" .. (err.code and (" (" .. tostring(err.code) .. ")") or "")
      .. (err.field and (" in " .. tostring(err.field)) or "")
  end
  return "unexpected error"
end

local function body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb"); data = f and f:read("*a") or ""; if f then f:close() end
  return data
end

local function notification_req()
  return { method = ngx.req.get_method(), path = ngx.var.uri, query = ngx.var.args or "", body = body(),
           headers = ngx.req.get_headers() }
end

local function to_order(id) return ngx.redirect("/order/" .. id, 303) end

function _M.index() return pages.index(shop.PRODUCTS) end

-- POST /buy/<provider>
function _M.buy(name)
  local product = shop.PRODUCTS[name]
  local gw = product and shop.gateway(name)
  if not gw then return pages.error(404, "Not available", "This payment method is not available.") end
  ngx.req.read_body()
  local form = ngx.req.get_post_args() or {}
  local order = assert(orders.create { provider = name, product = product.name, amount = product.amount,
                                       currency = product.currency })
  order.reference = shop.reference(order.id)
  orders.set_reference(order, order.reference)
  local res, err = gw:purchase(pay.params(name, order, form))
  if not res then
    ngx.log(ngx.WARN, "shop: order ", order.id, " purchase failed: ", tostring(err))
    orders.apply(order.id, { status = "failed" }, "purchase " .. describe(err))
    return pages.error(err and err.kind == "validation" and 400 or 502, "Payment not started",
      "The payment could not be started: " .. describe(err) .. ".")
  end
  orders.set_reference(order, res.reference or order.reference, res.keep)
  if res.status ~= "redirect" then
    orders.apply(order.id, res, "purchase")
    return to_order(order.id)
  end
  orders.event(order.id, "purchase: redirect")
  if res.method == "POST" then return pages.autopost(res.redirect_url, res.form) end
  return ngx.redirect(res.redirect_url, 302)
end

-- The buyer's return: /return/moka/<id> (POST), /return/mocopay/<id>, /return/zippy/<id>/success|error
function _M.back(name, id)
  local order = orders.get(id)
  local gw = order and order.provider == name and shop.gateway(name)
  if not gw then return pages.error(404, "Unknown order", "There is no such order.") end
  local params
  if name == "moka" then
    ngx.req.read_body()
    params = ngx.req.get_post_args() or {}
  else
    params = ngx.var.args or "" -- raw: Zippy verifies the bytes as sent
  end
  local res, err = gw:complete(params, orders.keep(id))
  if not res then
    ngx.log(ngx.WARN, "shop: order ", id, " return refused: ", tostring(err))
    orders.event(id, "return: refused, " .. describe(err))
    return pages.error(400, "Payment not confirmed", "The payment result could not be verified: " .. describe(err) .. ".")
  end
  orders.note(id, "session_id", res.session_id)
  orders.apply(id, res, "return")
  return to_order(id)
end

-- Notifications: /notify/moka (POST), /notify/mocopay (GET), /notify/zippy/success|error (POST)
function _M.notify(name)
  local gw = shop.gateway(name)
  if not gw then return ngx.exit(404) end
  local opts
  if name == "moka" then -- Moka's notification is checked with the CodeForHash kept at purchase
    opts = { lookup = function(other_trx_code)
      local o = orders.by_reference(other_trx_code)
      local keep = o and orders.keep(o.id)
      return keep and keep.code_for_hash
    end }
  elseif name == "mocopay" then -- the session must belong to the order the notification names
    opts = { keep = function(reference)
      local o = orders.by_reference(reference)
      return o and orders.keep(o.id)
    end }
  end
  local res, err, reply = gw:notification(notification_req(), opts)
  if res then
    reply = err -- on success: result, reply; on failure: nil, err, reply
    local order = orders.by_reference(res.reference)
    if order then
      orders.note(order.id, "session_id", res.session_id or (res.notification and res.notification.session_id))
      orders.apply(order.id, res, "notification")
    else
      ngx.log(ngx.WARN, "shop: notification for an unknown order")
    end
  else
    ngx.log(ngx.WARN, "shop: ", name, " notification refused: ", tostring(err))
  end
  reply = reply or { status = 500, body = "ERROR", content_type = "text/plain" }
  ngx.status = reply.status
  ngx.header["Content-Type"] = reply.content_type or "text/plain"
  ngx.print(reply.body)
  return ngx.exit(reply.status)
end

-- GET /order/<id>, /order/<id>.json
function _M.order(id, as_json)
  local o = orders.get(id)
  if not o then
    if as_json then ngx.status = 404; ngx.print('{"error":"not found"}'); return ngx.exit(404) end
    return pages.error(404, "Unknown order", "There is no such order.")
  end
  local notes = orders.notes(id, { "session_id" })
  if as_json then
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode { id = o.id, provider = o.provider, product = o.product, amount = o.amount,
      currency = o.currency, reference = o.reference, status = o.status, granted = o.granted, events = o.events })
    return
  end
  return pages.order(o, pay.status_ref(o.provider, o, notes) ~= nil)
end

-- POST /order/<id>/check: ask the provider (the third way the same payment can be reported).
function _M.check(id)
  local o = orders.get(id)
  local gw = o and shop.gateway(o.provider)
  if not gw then return pages.error(404, "Unknown order", "There is no such order.") end
  local ref = pay.status_ref(o.provider, o, orders.notes(id, { "session_id" }))
  if not ref then
    orders.event(id, "status: not available for " .. o.provider)
    return to_order(id)
  end
  local res, err = gw:status(ref, orders.keep(id)) -- with keep: the answer must be this order's
  if res then orders.apply(id, res, "status") else orders.event(id, "status: " .. describe(err)) end
  return to_order(id)
end

return _M
