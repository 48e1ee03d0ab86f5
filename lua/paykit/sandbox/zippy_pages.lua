-- The Zippy simulator's hosted payment pages (see paykit/sandbox/zippy.lua for the test
-- cards, PINs and element ids): GET /zippy/payment/start?tx=TOKEN, then POST
-- /zippy/payment/card, or /zippy/payment/phone and /zippy/payment/pin.
local M = {}

-- The simulator's own parts (fail, state, finish, the test cards and PINs) come from
-- paykit.sandbox.zippy as handle's first argument: that module loads this one, so this one
-- does not load it back.

local function tx_from_form(Z, util, form)
  local tx = form and form.tx and Z.state(util).by_token[form.tx]
  if not tx then return nil end
  if tx.status ~= "PENDING" then return nil, true end
  return tx
end

local function summary(util, tx)
  return string.format('<p id="amount">%s %s</p><p>Order <code id="ext-id">%s</code></p>',
    util.escape_html(tx.price), util.escape_html(tx.currency), util.escape_html(tx.ext_transaction_id))
end

-- A payment page: the summary, the message (id="error") if any, and a form posting `fields`
-- (trusted HTML) with the transaction's token to /zippy/payment/<step>; `after` follows the form.
local function form_page(util, tx, title, step, message, fields, after)
  return util.page(title, summary(util, tx)
    .. (message and ('<p id="error" class="error">' .. util.escape_html(message) .. "</p>") or "")
    .. '<form method="post" action="' .. util.base_url() .. "/zippy/payment/" .. step .. '">'
    .. '<input type="hidden" name="tx" value="' .. tx.token .. '">'
    .. fields .. "</form>" .. (after or ""))
end

local CANCEL = '<button id="cancel" type="submit" name="action" value="cancel">Cancel</button>'

local function card_page(util, tx, message)
  return form_page(util, tx, "Pay by card", "card", message,
    '<label>Card number <input id="card-number" name="card_number" autocomplete="off" inputmode="numeric"></label>'
    .. '<label>Expiry (MM/YY) <input id="card-expiry" name="expiry" autocomplete="off"></label>'
    .. '<label>CVC <input id="card-cvc" name="cvc" autocomplete="off" inputmode="numeric"></label>'
    .. '<button id="pay" type="submit" name="action" value="pay">Pay</button>' .. CANCEL,
    "<p>Sandbox cards: 4111111111111111 approves, 4000000000000002 is declined.</p>")
end

local function phone_page(util, tx, message)
  return form_page(util, tx, "Pay with your phone bill", "phone", message,
    '<label>Phone number <input id="phone" name="phone" inputmode="tel"></label>'
    .. '<button id="send" type="submit" name="action" value="send">Send me a PIN</button>' .. CANCEL)
end

local function pin_page(Z, util, tx, message)
  return form_page(util, tx, "Enter the PIN we sent you", "pin", message,
    '<label>PIN <input id="pin" name="pin" inputmode="numeric" autocomplete="off"></label>'
    .. '<button id="confirm" type="submit" name="action" value="confirm">Confirm</button>',
    "<p>Sandbox: the SMS PIN is " .. Z.APPROVE_PIN .. "; any other PIN fails.</p>")
end

local function expiry_ok(expiry)
  local mm, yy = tostring(expiry or ""):match("^%s*(%d%d)%s*/%s*(%d%d)%s*$")
  if not mm then return false end
  mm, yy = tonumber(mm), tonumber(yy) + 2000
  if mm < 1 or mm > 12 then return false end
  local now = os.date("!*t", ngx.time())
  return yy > now.year or (yy == now.year and mm >= now.month)
end

--- Serves /zippy/payment/<step>.
-- @tparam table Z the simulator (paykit.sandbox.zippy)
function M.handle(Z, util, method, step)
  local fail, state, finish = Z.fail, Z.state, Z.finish
  if step == "start" then
    if method ~= "GET" then return fail(util, 405, "method not allowed") end
    local token = util.query().tx
    local tx = token and state(util).by_token[token]
    if not tx then return fail(util, 404, "no transaction for this token") end
    if tx.status ~= "STARTED" then return fail(util, 400, "this transaction was already started") end
    tx.status = "PENDING"
    if tx.pay_method == "CARD" then return card_page(util, tx) end
    return phone_page(util, tx)
  end
  if method ~= "POST" then return fail(util, 405, "method not allowed") end
  local form = util.form()
  local tx, done = tx_from_form(Z, util, form)
  if not tx then
    if done then return fail(util, 400, "this transaction is already finished") end
    return fail(util, 404, "no transaction for this token")
  end
  if form.action == "cancel" then return util.redirect((finish(util, tx, "USER_CANCELLED")), 301) end
  if step == "card" and tx.pay_method == "CARD" then
    local number = tostring(form.card_number or ""):gsub("[%s%-]", "")
    if not number:match("^%d+$") or #number < 12 or #number > 19 or not util.luhn(number) then
      return card_page(util, tx, "That card number is not valid.")
    end
    if not expiry_ok(form.expiry) then return card_page(util, tx, "The expiry date is not valid.") end
    if not tostring(form.cvc or ""):match("^%d%d%d%d?$") then return card_page(util, tx, "The CVC is not valid.") end
    local approved = Z.APPROVE_CARDS[number] == true
    return util.redirect((finish(util, tx, (not approved) and "CC_ERROR" or nil)), 301)
  elseif step == "phone" and tx.pay_method == "OPERATOR" then
    local phone = tostring(form.phone or ""):gsub("[%s%-]", "")
    if not phone:match("^%+?%d+$") or #phone:gsub("%+", "") < 6 or #phone:gsub("%+", "") > 15 then
      return phone_page(util, tx, "That phone number is not valid.")
    end
    if phone == Z.REFUSED_PHONE then return util.redirect((finish(util, tx, "DIR_BILL_ERROR")), 301) end
    tx.phone_ok = true
    return pin_page(Z, util, tx)
  elseif step == "pin" and tx.pay_method == "OPERATOR" and tx.phone_ok then
    local ok = tostring(form.pin or "") == Z.APPROVE_PIN
    return util.redirect((finish(util, tx, (not ok) and "DIR_BILL_ERROR" or nil)), 301)
  end
  return fail(util, 400, "this step does not belong to this transaction")
end


return M
