-- The shop's request handlers (content_by_lua). Each one is: read the request, one call of a
-- journaled gateway (shop.gateway: the journal records the payment, flags repeats and grants
-- once), write what happened to the order's history, answer.
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

-- The journal's store did not answer (the record could not be written or read).
local STORE_DOWN = { journal_unavailable = true, store_unavailable = true, store_timeout = true, store_auth = true }
local function store_down(err) return type(err) == "table" and STORE_DOWN[err.code] or false end

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

-- The journal record of an order's payment (nil, err when the store does not answer).
local function record_of(o)
  local gw = shop.gateway(o.provider)
  if not gw then return nil, { message = "provider not available" } end
  return gw:record_of(o.reference)
end

-- What the buyer sees as the order's status, from the journal's state.
local SHOWN = { paid = "paid", failed = "failed", refused = "failed", expired = "failed" }

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
  orders.set_reference(order, shop.reference(order.id))
  local res, err = gw:purchase(pay.params(name, order, form))
  if not res then
    ngx.log(ngx.WARN, "shop: order ", order.id, " purchase failed: ", tostring(err))
    if store_down(err) then
      -- the journal could not be written: nothing was sent, and nothing of the order stays
      orders.discard(order)
      return pages.error(503, "Payment not started", "The shop cannot record payments right now (its payment "
        .. "journal is unavailable), so nothing was sent and nothing was charged. Please try again later.",
        err.code)
    end
    orders.event(order.id, "purchase: " .. describe(err))
    return pages.error(err and err.kind == "validation" and 400 or 502, "Payment not started",
      "The payment could not be started: " .. describe(err) .. ".", err and err.code)
  end
  -- Zippy's notices name its own id (the reference and a nonce): it finds the order too
  if res.reference and res.reference ~= order.reference then orders.alias(order, res.reference) end
  if res.status ~= "redirect" then
    orders.record(order.id, res, "purchase")
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
  -- the order's reference: the journal gives what the purchase kept for this payment, so a
  -- return is checked against its own order's payment
  local res, err = gw:complete(params, order.reference)
  if not res then
    ngx.log(ngx.WARN, "shop: order ", id, " return refused: ", tostring(err))
    orders.event(id, "return: refused, " .. describe(err))
    if store_down(err) then
      return pages.error(503, "Payment not confirmed yet", "The shop cannot read its payment journal right now; "
        .. "your payment is safe, please reload this page in a moment.", err.code)
    end
    return pages.error(400, "Payment not confirmed", "The payment result could not be verified: " .. describe(err) .. ".",
      err and err.code)
  end
  orders.note(id, "session_id", res.session_id)
  orders.record(id, res, "return")
  return to_order(id)
end

-- Notifications: /notify/moka (POST), /notify/mocopay (GET), /notify/zippy/success|error (POST)
function _M.notify(name)
  local gw = shop.gateway(name)
  if not gw then return ngx.exit(404) end
  local opts -- Moka's CodeForHash is read from the journal by the journaled gateway itself
  if name == "mocopay" then -- the session must belong to the payment the notification names
    opts = { keep = function(reference)
      local rec = type(reference) == "string" and gw:record_of(reference)
      return rec and rec.keep
    end }
  end
  local res, err, reply = gw:notification(notification_req(), opts)
  if res then
    reply = err -- on success: result, reply; on failure: nil, err, reply
    local order = orders.by_reference(res.reference)
    if order then
      orders.note(order.id, "session_id", res.session_id or (res.notification and res.notification.session_id))
      orders.record(order.id, res, "notification")
    else
      ngx.log(ngx.WARN, "shop: notification for an unknown order")
    end
    if res.journal and res.journal.error then
      -- verified, but not journaled: ask the provider to deliver it again later
      ngx.log(ngx.ERR, "shop: notification not journaled: ", tostring(res.journal.error))
      reply = { status = 503, body = "ERROR", content_type = "text/plain" }
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
  local rec, err = record_of(o)
  o.status = rec and (SHOWN[rec.state] or "pending") or (err and "unknown" or "pending")
  o.journal = rec and { state = rec.state, grant = rec.grant, token = rec.grant_token, store = shop.store_name(),
                        created_at = rec.created_at, updated_at = rec.updated_at }
    or { error = err and (err.message or tostring(err)) or nil, store = shop.store_name() }
  if as_json then
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode { id = o.id, provider = o.provider, product = o.product, amount = o.amount,
      currency = o.currency, reference = o.reference, status = o.status, granted = o.granted,
      grant_calls = o.grant_calls, journal = o.journal, events = o.events })
    return
  end
  return pages.order(o, pay.can_check(o.provider, rec))
end

-- POST /order/<id>/check: ask the provider (the third way the same payment can be reported).
function _M.check(id)
  local o = orders.get(id)
  local gw = o and shop.gateway(o.provider)
  if not gw then return pages.error(404, "Unknown order", "There is no such order.") end
  local res, err = gw:status(o.reference) -- the journal knows what the provider needs (MoCoPay: the session)
  if res then orders.record(id, res, "status") else orders.event(id, "status: " .. describe(err)) end
  return to_order(id)
end

return _M
