--- paykit.providers.moka_ops: Moka's after-sale, query and stored-card calls as a table of operations.
--
-- Each entry of `OPERATIONS` is one call: its path, whether it may be retried once sent
-- (`idempotent`), the fields its table takes (`fields`: an unknown one is refused by name,
-- `paykit.kit.fields`), how the request block is built from them (`build`, every check before
-- the network) and how Moka's Data block is read (`status` for the DoCapture-like answers read
-- by `paykit.providers.moka_wire.inner`, or `read`). `KIT` is the same table in the shape of
-- `paykit.kit.ops` (installed by `paykit.kit.provider`); @{install} adds what Moka's calls take
-- besides a table (`bin_info("526911")`, `remove_card(token)`, `payment_details(reference)`).
--
-- After-sale calls (capture, void, refund, approve_pool, undo_pool) name the payment with
-- exactly one of `order_id` (Moka's VirtualPosOrderId) and `reference` (your OtherTrxCode).
-- @module paykit.providers.moka_ops
-- @usage
--   local ops = require "paykit.providers.moka_ops"
--   ops.OPERATIONS.capture.path   --> "/PaymentDealer/DoCapture"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local kit = require "paykit.kit"
local R = require "paykit.providers.moka_request"
local C = require "paykit.providers.moka_checks"
local wire = require "paykit.providers.moka_wire"

local _M = {}

local V = errors.validation
local obj, put, dec = gateway.object, gateway.put, gateway.decimal
local denull, invalid, id_text, nonempty = wire.denull, wire.invalid, wire.id_text, wire.nonempty

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

local function result(t)
  t.provider = "moka"
  return kit.result(t)
end

-- The amount of an after-sale call: absent (nil) or checked decimal text.
local function optional_amount(self, p)
  local currency, err = C.currency_of(self, p.currency)
  if not currency then return nil, err end
  if p.amount == nil and p.amount_minor == nil then return false end
  local amount, m = C.amount_of(p, "amount", currency, "amount", true)
  if not amount then return nil, m end
  return amount
end

local function with_amount(self, p, o)
  local amount, err = optional_amount(self, p)
  if amount == nil then return nil, err end
  if amount then put(o, "Amount", dec(amount)) end
  return o
end

local function with_ip(self, p, o)
  -- DoCapture and DoVoid carry a ClientIP: the caller's (or the instance's default), never a made-up one
  local ip, err = C.client_ip(self, p)
  if not ip then return nil, err end
  return put(o, "ClientIP", ip)
end

local function with_reason(self, p, o)
  local reason = p.reason
  if reason == nil then reason = 2 end
  if type(reason) ~= "number" or not self.void_reasons[reason] then
    local list = {}
    for v in pairs(self.void_reasons) do list[#list + 1] = tostring(v) end
    table.sort(list)
    return nil, V("reason", "invalid", "reason (VoidRefundReason) must be one of " .. table.concat(list, ", ") ..
      " (the values Moka publishes; more with the void_reasons option)")
  end
  return put(o, "VoidRefundReason", reason)
end

-- The request block of an after-sale call: the payment's reference, then each `with` step.
local function after_sale(...)
  local steps = { ... }
  return function(self, p)
    local ok, err = C.one_reference(p)
    if not ok then return nil, err end
    local o = R.put_reference(obj(), p)
    for _, step in ipairs(steps) do
      o, err = step(self, p, o)
      if not o then return nil, err end
    end
    return o
  end
end

local REF = { "order_id", "reference" }
local function fields(...)
  local list = {}
  for _, l in ipairs { REF, ... } do for _, k in ipairs(l) do list[#list + 1] = k end end
  return set(list)
end
local AMOUNT, IP = { "amount", "amount_minor", "currency" }, { "client_ip" }

local function check_payment_ref(p)
  local which, err = C.one_of(p, "payment_id", "reference",
    "give exactly one of payment_id (DealerPaymentId) and reference (OtherTrxCode)")
  if not which then return nil, err end
  local ok
  if which == "payment_id" then ok, err = C.check_id(p.payment_id, "payment_id")
  else ok, err = C.check_len(p, "reference", 64) end
  if not ok then return nil, err end
  return which
end

-- A Data block answer: the block (a table; `accept_true`: or true) | nil, err
local function data_block(accept_true)
  return function(_, data, _, _, op, idempotent)
    if type(data) == "table" or (accept_true and data == true) then return data end
    return nil, invalid(op, "has no Data block", not idempotent)
  end
end

local PERSON_FIELDS = { "customer_code", "customer_password", "first_name", "last_name", "gender", "birth_date",
  "gsm", "email", "address", "card", "card_name", "dealer_customer_id" }

-- The operations (see the module description): `_M.OPERATIONS`.
local OPERATIONS = {
  -- Amount absent = the whole pre-authorised amount. It turns a hold into a charge, so it is
  -- never retried once it may have been sent (a second DoCapture answers PaymentIsNotPreAuth).
  capture = { path = "/PaymentDealer/DoCapture", idempotent = false, status = "paid",
    fields = fields(AMOUNT, IP), build = after_sale(with_amount, with_ip) },
  -- Retried: a void moves no money twice (a repeat that finds it done answers
  -- moka.payment_already_cancelled). reason: VoidRefundReason, 2 unless void_reasons says more.
  void = { path = "/PaymentDealer/DoVoid", idempotent = true, status = "voided",
    fields = fields(IP, { "reason" }), build = after_sale(with_ip, with_reason) },
  -- Amount absent or 0 refunds the whole remaining amount; never retried once sent.
  refund = { path = "/PaymentDealer/DoCreateRefundRequest", idempotent = false, status = "pending",
    need = { RefundRequestId = "id" }, fields = fields(AMOUNT), build = after_sale(with_amount) },
  approve_pool = { path = "/PaymentDealer/DoApprovePoolPayment", idempotent = true, status = "paid",
    fields = fields(), build = after_sale() },
  undo_pool = { path = "/PaymentDealer/UndoApprovePoolPayment", idempotent = true, status = "pending",
    fields = fields(), build = after_sale() },

  payment_details = { path = "/PaymentDealer/GetDealerPaymentTrxDetailList", idempotent = true, string_as = "reference",
    fields = set { "payment_id", "reference" },
    build = function(_, p)
      local which, err = check_payment_ref(p)
      if not which then return nil, err end
      if which == "payment_id" then return put(obj(), "PaymentId", p.payment_id) end
      return put(obj(), "OtherTrxCode", p.reference)
    end,
    read = function(self, data, _, p)
      if type(data) ~= "table" then return nil, invalid("payment_details", "has no Data block") end
      -- the answer must be about the payment asked for: Moka's own PaymentDetail names it
      local d = denull(data.PaymentDetail)
      if type(d) ~= "table" then return nil, invalid("payment_details", "lacks Data.PaymentDetail") end
      local by_id = not C.is_blank(p.payment_id)
      local got = by_id and denull(d.DealerPaymentId) or denull(d.OtherTrxCode)
      local asked = by_id and p.payment_id or p.reference
      if not nonempty(got) or id_text(got) ~= id_text(asked) then
        self.log("error", "moka.payment_details: the answer is about another payment")
        return nil, errors.provider { code = "moka.answer_mismatch", op = "moka.payment_details", provider = "moka",
          message = "Moka's payment detail answer names another payment (" .. (by_id and
            "DealerPaymentId" or "OtherTrxCode") .. ") than the one asked for, or none: refused" }
      end
      local list = denull(data.PaymentTrxDetailList)
      if list ~= nil and type(list) ~= "table" then
        return nil, invalid("payment_details", "has a PaymentTrxDetailList that is not a list")
      end
      return data
    end },

  bin_info = { path = "/PaymentDealer/GetBankCardInformation", idempotent = true, any_as = "bin",
    fields = set { "bin" },
    build = function(_, p)
      local ok, err = C.check_bin(p.bin)
      if not ok then return nil, err end
      return put(obj(), "BinNumber", p.bin)
    end, read = data_block() },

  -- DoCalcPaymentTable{bin=, amount=, currency=, three_d=true, include_commission=false}
  installments = { path = "/PaymentDealer/DoCalcPaymentTable", idempotent = true,
    fields = set { "bin", "amount", "amount_minor", "currency", "three_d", "include_commission" },
    build = function(self, p)
      local ok, err = C.check_bin(p.bin)
      if not ok then return nil, err end
      local currency
      currency, err = C.currency_of(self, p.currency)
      if not currency then return nil, err end
      local amount, m = C.amount_of(p, "amount", currency, "amount")
      if not amount then return nil, m end
      if p.three_d ~= nil and type(p.three_d) ~= "boolean" then
        return nil, V("three_d", "invalid", "three_d must be true or false")
      end
      local commission
      commission, err = C.flag_of(p, "include_commission")
      if not commission then return nil, err end
      local o = obj()
      put(o, "BinNumber", p.bin); put(o, "Currency", currency); put(o, "OrderAmount", dec(amount))
      put(o, "IsThreeD", p.three_d == false and 0 or 1)
      put(o, "IsIncludedCommissionAmount", commission)
      return o
    end, read = data_block() },

  -- AddCustomerWithCard: a card to store never carries a CVC; not retried once sent
  add_customer = { path = "/DealerCustomer/AddCustomerWithCard", idempotent = false, fields = set(PERSON_FIELDS),
    build = function(self, p)
      if C.is_blank(p.customer_code) then return nil, V("customer_code", "required", "customer_code is required") end
      local ok, err = C.check_person(p, "")
      if not ok then return nil, err end
      local o = obj()
      put(o, "CustomerCode", p.customer_code)
      put(o, "Password", p.customer_password or "")
      R.put_person(o, p)
      if p.card ~= nil then
        local _, cerr = R.stored_card(self, p, o)
        if cerr then return nil, cerr end
      end
      return o
    end, read = data_block() },

  add_card = { path = "/DealerCustomer/AddCard", idempotent = false,
    fields = set { "dealer_customer_id", "customer_code", "card", "card_name" },
    build = function(self, p)
      local o, err = R.customer_ref(p, obj())
      if not o then return nil, err end
      local _
      _, err = R.stored_card(self, p, o)
      if err then return nil, err end
      return o
    end, read = data_block() },

  list_cards = { path = "/DealerCustomer/GetCardList", idempotent = true,
    fields = set { "dealer_customer_id", "customer_code" },
    build = function(_, p) return R.customer_ref(p, obj()) end, read = data_block() },

  remove_card = { path = "/DealerCustomer/RemoveCard", idempotent = true, any_as = "card_token",
    fields = set { "card_token" },
    build = function(_, p)
      if type(p.card_token) ~= "string" or p.card_token == "" then
        return nil, V("card_token", "required", "card_token is required")
      end
      local ok, err = C.check_len(p, "card_token", 64)
      if not ok then return nil, err end
      return put(obj(), "CardToken", p.card_token)
    end, read = data_block(true) },
}

--- The operations (see the module description).
-- @table OPERATIONS
_M.OPERATIONS = OPERATIONS

-- The reading of a DoCapture-like answer (Data.IsSuccessful, the bank's code, RefundRequestId).
local function inner_read(op, name)
  return function(self, data, raw, p)
    local amount = optional_amount(self, p)
    local r, err = wire.inner(name, data, op.status, { reference = p.reference, provider_reference = p.order_id,
      amount = amount or nil, currency = amount and C.currency_of(self, p.currency) or nil, raw = raw },
      op.need, not op.idempotent)
    if not r then
      self.log("error", "moka." .. name .. ": " .. err.message)
      return nil, err
    end
    if r.status ~= "failed" and data.RefundRequestId ~= nil then r.refund_id = id_text(data.RefundRequestId) end
    return result(r)
  end
end

--- `OPERATIONS` in the shape of `paykit.kit.ops` (the declaration's `operations`).
-- @table KIT
_M.KIT = {}
for name, op in pairs(_M.OPERATIONS) do
  local read = op.read or inner_read(op, name)
  _M.KIT[name] = {
    method = "POST", path = op.path, idempotent = op.idempotent, fields = op.fields, what = name,
    body = function(self, t)
      local payload, err = op.build(self, t)
      if not payload then return nil, err end
      return wire.body(self, op.path, payload)
    end,
    read = function(self, answer, info, p)
      local data, raw = wire.open(self, name, answer, info)
      if data == nil and errors.is(raw) then return nil, raw end
      return read(self, data, raw, p, name, op.idempotent)
    end,
  }
end

--- Adds to P's operation methods what Moka's calls take besides a table: a string for the
-- field `string_as` names, any value for `any_as`'s (then checked as that field); anything
-- else that is not a table is refused naming `params`.
-- @tparam table P the provider (from `paykit.kit.provider`, with `KIT` installed)
function _M.install(P)
  for name, op in pairs(_M.OPERATIONS) do
    local by_kit = P.methods[name]
    P.methods[name] = function(self, p)
      if op.any_as and type(p) ~= "table" then p = { [op.any_as] = p }
      elseif op.string_as and type(p) == "string" then p = { [op.string_as] = p } end
      if type(p) ~= "table" then return nil, V("params", "required", name .. " needs a table of fields") end
      local r, err = by_kit(self, p)
      if r == nil then return nil, wire.own(err) end
      return r
    end
  end
end

return _M
