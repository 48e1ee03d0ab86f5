-- What each provider's purchase needs: the one place that knows provider-specific fields.
local shop = require "shop"

local _M = {}

function _M.params(name, order, form)
  local id, ref = order.id, order.reference
  local ip = ngx.var.remote_addr
  if name == "moka" then
    return {
      amount = order.amount, currency = order.currency, reference = ref, client_ip = ip,
      description = order.product, redirect_url = shop.url("/return/moka/" .. id),
      card = { number = form.card_number, holder = form.card_holder, exp_month = form.exp_month,
               exp_year = form.exp_year, cvc = form.cvc },
    }
  elseif name == "mocopay" then
    return {
      pid = shop.PRODUCTS.mocopay.pid, reference = ref, client_ip = ip,
      return_url = shop.url("/return/mocopay/" .. id), notify_url = shop.url("/notify/mocopay"),
    }
  elseif name == "zippy" then
    return {
      product_id = shop.config().zippy_product, amount = order.amount, currency = order.currency,
      pay_method = form.pay_method == "OPERATOR" and "OPERATOR" or "CARD", carrier = "TMOBILE", region = 310,
      reference = ref,
      success_url = shop.url("/return/zippy/" .. id .. "/success"),
      error_url = shop.url("/return/zippy/" .. id .. "/error"),
      callback_success_url = shop.url("/notify/zippy/success"),
      callback_error_url = shop.url("/notify/zippy/error"),
    }
  end
end

-- Whether a status check can find the payment with what its journal record knows.
function _M.can_check(name, rec)
  if name == "moka" then return rec ~= nil end
  if name == "mocopay" then return rec ~= nil and rec.session_id ~= nil end
  return false -- Zippy has no lookup: its outcome arrives only as a signed notice
end

return _M
