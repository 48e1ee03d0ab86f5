--- paykit.providers.moka_request: the request objects Moka is sent, built from checked input
-- (no network).
--
-- `payment(self, p, three_d)` checks the payment parameters (the module description of
-- `paykit.providers.moka`: an unknown field is refused by name) with
-- `paykit.providers.moka_checks` and builds the DoDirectPayment / DoDirectPaymentThreeD
-- request object; the other functions are the builders the after-sale and stored-card
-- operations (`paykit.providers.moka_ops`) share.
--
-- `payment_body(self, p, three_d, path)` is what `start_3d` and `pay` call: the usual request
-- (card or card_token, 3D or direct, pre-auth or not) is checked and written as the whole
-- body text by one compiled shape (`paykit.core.shape`, csrc/shape.c; `SHAPES`); the shape
-- only writes what `payment` accepts, byte for byte, and for everything else (a refusal, a
-- buyer, basket, customer or integrator_id, a metatable) `payment` runs and gives its error
-- or request object. spec/core_shape_spec.lua holds the two to the same answers.
-- @module paykit.providers.moka_request
-- @usage
--   local request = require "paykit.providers.moka_request"
--   local body, info = request.payment(gw, {amount = "27.50", card = card, client_ip = "203.0.113.7",
--     redirect_url = "https://shop.example/return"}, true)   -- body: a paykit.gateway.object
local errors = require "paykit.errors"
local money = require "paykit.money"
local gateway = require "paykit.gateway"
local checks = require "paykit.kit.checks"
local C = require "paykit.providers.moka_checks"
local kjson = require "paykit.kit.json"

local _M = {}

--- The currencies Moka takes (TRY is written TL; `paykit.providers.moka_checks.CURRENCIES`).
_M.CURRENCIES = C.CURRENCIES

local V = errors.validation
local obj, put, dec, object_of = gateway.object, gateway.put, gateway.decimal, gateway.object_of
local is_blank, currency_of, amount_of, check_card = C.is_blank, C.currency_of, C.amount_of, C.check_card
local card_fields = C.card_fields
local check_len, check_texts, flag_of, check_id = C.check_len, C.check_texts, C.flag_of, C.check_id
local one_of, client_ip, check_person = C.one_of, C.client_ip, C.check_person

local dec_text, floor = gateway.decimal_text, math.floor

-- The members of a payment request without IntegratorId, buyer, basket or customer, in
-- Moka's order (shared by every such request: gateway.put copies before appending).
local BASE_KEYS = { "CardHolderFullName", "CardNumber", "ExpMonth", "ExpYear", "CvcNumber", "CardToken", "Amount",
  "Currency", "InstallmentNumber", "ClientIP", "OtherTrxCode", "SubMerchantName", "IsPoolPayment", "IsPreAuth",
  "IsTokenized", "Software", "Description" }
local function with(list, more)
  local t = {}
  for i, k in ipairs(list) do t[i] = k end
  for _, k in ipairs(more) do t[#t + 1] = k end
  return t
end
local KEYS_PAY = gateway.shared_keys(with(BASE_KEYS, {}))
local KEYS_3D = gateway.shared_keys(with(BASE_KEYS, { "ReturnHash", "RedirectUrl", "RedirectType" }))

local function put_reference(o, p)
  if not is_blank(p.order_id) then put(o, "VirtualPosOrderId", p.order_id) end
  if not is_blank(p.reference) then put(o, "OtherTrxCode", p.reference) end
  return o
end

-- The person fields of CustomerInformation and AddCustomerWithCard ("" when absent).
local function put_person(o, c)
  put(o, "FirstName", c.first_name or ""); put(o, "LastName", c.last_name or "")
  put(o, "Gender", c.gender and tostring(c.gender) or ""); put(o, "BirthDate", c.birth_date or "")
  put(o, "GsmNumber", c.gsm or ""); put(o, "Email", c.email or ""); put(o, "Address", c.address or "")
  return o
end

--- The payment request (DoDirectPayment / DoDirectPaymentThreeD), checked and built.
-- @tparam table self the instance (its currency, client_ip, software, clock)
-- @tparam table p the payment parameters
-- @tparam boolean three_d whether it is the 3D request (redirect_url required)
-- @treturn table the request object (a `paykit.gateway.object`)
-- @treturn table info `amount`, `currency`, `reference`, `installments`, `pre_auth`
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.payment(self, p, three_d)
  if type(p) ~= "table" then return nil, V("params", "required", "payment parameters are required") end
  local unknown = C.fields(p, three_d and "start_3d" or "pay")
  if unknown then return nil, unknown end
  local currency, err = currency_of(self, p.currency)
  if not currency then return nil, err end
  local amount, minor = amount_of(p, "amount", currency, "amount")
  if not amount then return nil, minor end

  local has_card, has_token = p.card ~= nil, not is_blank(p.card_token)
  if has_card == has_token then
    return nil, V(has_card and "card_token" or "card", has_card and "ambiguous" or "required",
      "give either card (number, expiry, CVC) or card_token, not both")
  end
  local number, exp_month, exp_year, cvc, holder
  if has_card then
    number, exp_month, exp_year, cvc, holder = card_fields(self, p.card)
    if not number then return nil, exp_month end
  elseif type(p.card_token) ~= "string" or #p.card_token > 64 or p.card_token:find("[%c%s]") then
    return nil, V("card_token", "invalid", "card_token must be a stored card's CardToken (a string of at most 64 characters)")
  elseif p.tokenize then
    return nil, V("tokenize", "card_token_with_save_card", "a card token cannot be used when the card is to be stored")
  end

  local inst = p.installments or 1
  if type(inst) ~= "number" or inst ~= floor(inst) or inst < 0 or inst > 12 then
    return nil, V("installments", "invalid", "installments must be an integer from 0 to 12 (0 or 1 = single payment)")
  end
  if inst > 1 and currency ~= "TL" then
    return nil, V("installments", "foreign_currency", "installments are not possible in " .. currency .. ": only in TL")
  end
  local ip
  ip, err = client_ip(self, p)
  if not ip then return nil, err end
  local ok
  ok, err = check_len(p, "software", 30); if not ok then return nil, err end
  ok, err = check_len(p, "description", 200, nil, true); if not ok then return nil, err end
  ok, err = check_len(p, "sub_merchant", 100); if not ok then return nil, err end
  ok, err = check_len(p, "reference", 64); if not ok then return nil, err end
  local pool, pre_auth, tokenize
  pool, err = flag_of(p, "pool"); if not pool then return nil, err end
  pre_auth, err = flag_of(p, "pre_auth"); if not pre_auth then return nil, err end
  tokenize, err = flag_of(p, "tokenize"); if not tokenize then return nil, err end
  if three_d then
    local u = p.redirect_url
    if not checks.is_http_url(u) then
      return nil, V("redirect_url", u == nil and "required" or "invalid", "redirect_url must be an absolute http(s) URL")
    end
    if p.redirect_type ~= nil and p.redirect_type ~= 0 and p.redirect_type ~= 1 then
      return nil, V("redirect_type", "invalid", "redirect_type must be 0 (page) or 1 (iframe)")
    end
  end
  local iid = p.integrator_id
  if iid ~= nil and (type(iid) ~= "number" or iid ~= floor(iid) or iid < 0 or iid > 255) then
    return nil, V("integrator_id", "invalid", "integrator_id must be an integer from 0 to 255 (Moka's tinyint)")
  end
  if p.buyer ~= nil then
    if type(p.buyer) ~= "table" then return nil, V("buyer", "invalid", "buyer must be a table") end
    ok, err = check_texts(p.buyer, { "full_name", "gsm", "email", "address" }, 200, "buyer.")
    if not ok then return nil, err end
  end
  if p.customer ~= nil then
    if type(p.customer) ~= "table" then return nil, V("customer", "invalid", "customer must be a table") end
    ok, err = check_person(p.customer, "customer.")
    if not ok then return nil, err end
  end

  -- basket: total must equal the amount
  local basket
  if p.basket ~= nil then
    if type(p.basket) ~= "table" or #p.basket == 0 then
      return nil, V("basket", "invalid", "basket must be a non-empty list of products")
    end
    basket = {}
    local total = 0
    for i, item in ipairs(p.basket) do
      local f = "basket[" .. i .. "]"
      if type(item) ~= "table" then return nil, V(f, "invalid", f .. " must be a table") end
      if is_blank(item.product_id) and is_blank(item.product_code) then
        return nil, V(f .. ".product_code", "required", "each basket product needs product_id or product_code")
      end
      ok, err = check_id(item.product_id, f .. ".product_id"); if not ok then return nil, err end
      ok, err = check_len(item, "product_code", 100, f .. ".product_code"); if not ok then return nil, err end
      local price, pminor = amount_of(item, "unit_price", currency, f .. ".unit_price")
      if not price then return nil, pminor end
      local q = item.quantity or 1
      if type(q) ~= "number" or q ~= math.floor(q) or q < 1 then
        return nil, V(f .. ".quantity", "invalid", "quantity must be a positive integer")
      end
      total = total + pminor * q
      local b = obj()
      if not is_blank(item.product_id) then put(b, "ProductId", item.product_id) end
      if not is_blank(item.product_code) then put(b, "ProductCode", item.product_code) end
      put(b, "UnitPrice", dec(price)); put(b, "Quantity", q)
      basket[#basket + 1] = b
    end
    if total ~= minor then
      return nil, V("basket", "total_mismatch", "the basket total " .. money.format(total, "TRY") ..
        " does not equal the amount " .. amount)
    end
  end

  -- the members every payment request has, in Moka's order, made in one go (none is nil)
  local token = p.card_token
  if has_card then
    holder, cvc, token = holder or "", cvc or "", ""
  else
    holder, number, exp_month, exp_year, cvc = "", "", "", "", ""
  end
  local info = { amount = amount, currency = currency, reference = p.reference, installments = inst,
    pre_auth = pre_auth == 1 }
  local iid_given, buyer, customer = p.integrator_id, p.buyer, p.customer
  if not iid_given and buyer == nil and basket == nil and customer == nil then
    -- the usual shape: one values list against a shared member list, nothing appended
    if three_d then
      return object_of(KEYS_3D, { holder, number, exp_month, exp_year, cvc, token, dec_text(amount), currency,
        inst, ip, p.reference or "", p.sub_merchant or "", pool, pre_auth, tokenize,
        p.software or self.software, p.description or "", 1, p.redirect_url, p.redirect_type or 0 }), info
    end
    return object_of(KEYS_PAY, { holder, number, exp_month, exp_year, cvc, token, dec_text(amount), currency,
      inst, ip, p.reference or "", p.sub_merchant or "", pool, pre_auth, tokenize,
      p.software or self.software, p.description or "" }), info
  end
  local r = object_of(
    { "CardHolderFullName", "CardNumber", "ExpMonth", "ExpYear", "CvcNumber", "CardToken", "Amount", "Currency",
      "InstallmentNumber", "ClientIP", "OtherTrxCode", "SubMerchantName", "IsPoolPayment", "IsPreAuth", "IsTokenized" },
    { holder, number, exp_month, exp_year, cvc, token, dec_text(amount), currency,
      inst, ip, p.reference or "", p.sub_merchant or "", pool, pre_auth, tokenize })
  if p.integrator_id then put(r, "IntegratorId", p.integrator_id) end
  put(r, "Software", p.software or self.software)
  put(r, "Description", p.description or "")
  if three_d then
    put(r, "ReturnHash", 1)
    put(r, "RedirectUrl", p.redirect_url)
    put(r, "RedirectType", p.redirect_type or 0)
  end
  if p.buyer ~= nil then
    local b = p.buyer
    local o = obj()
    put(o, "BuyerFullName", b.full_name); put(o, "BuyerGsmNumber", b.gsm)
    put(o, "BuyerEmail", b.email); put(o, "BuyerAddress", b.address)
    put(r, "BuyerInformation", o)
  end
  if basket then put(r, "BasketProduct", basket) end
  if p.customer ~= nil then
    local c = p.customer
    local o = obj()
    put(o, "DealerCustomerId", c.dealer_customer_id or ""); put(o, "CustomerCode", c.customer_code or "")
    put_person(o, c)
    put(o, "CardName", c.card_name or "")
    put(r, "CustomerInformation", o)
  end
  return r, info
end

-- ------------------------------------------------------------------------------------
-- the compiled shapes of the usual payment request (paykit.core.shape): one C call checks the
-- parameters and writes the whole body; anything they do not take goes the Lua way above

-- the extra arguments of shape:write: the instance's clock, currency, client_ip, software
local A_CLOCK, A_CURRENCY, A_IP, A_SOFTWARE = 1, 2, 3, 4
local function shape_members(card, three_d)
  local m = {}
  local function add(t) m[#m + 1] = t end
  if card then
    add { kind = "card", key = "card", clock = A_CLOCK,
      names = { "CardHolderFullName", "CardNumber", "ExpMonth", "ExpYear", "CvcNumber" } }
    add { name = "CardToken", kind = "empty", key = "card_token" }
  else
    for _, n in ipairs { "CardHolderFullName", "CardNumber", "ExpMonth", "ExpYear", "CvcNumber" } do
      add { name = n, kind = "const", json = '""' }
    end
    add { name = "CardToken", kind = "token", key = "card_token", max = 64 }
  end
  add { name = "Amount", kind = "money", key = "amount", minor_key = "amount_minor", exponent = 2 }
  add { name = "Currency", kind = "currency", key = "currency", arg = A_CURRENCY,
    map = { TL = "TL", TRY = "TL", USD = "USD", EUR = "EUR", GBP = "GBP" } }
  add { name = "InstallmentNumber", kind = "int", key = "installments", min = 0, max = 12, default = 1,
    false_default = true, over = 1, over_currency = "TL" }
  add { name = "ClientIP", kind = "ip", key = "client_ip", arg = A_IP }
  add { name = "OtherTrxCode", kind = "text", key = "reference", max = 64 }
  add { name = "SubMerchantName", kind = "text", key = "sub_merchant", max = 100 }
  add { name = "IsPoolPayment", kind = "flag", key = "pool" }
  add { name = "IsPreAuth", kind = "flag", key = "pre_auth" }
  add { name = "IsTokenized", kind = "flag", key = "tokenize", falsy_only = not card }
  add { name = "Software", kind = "text", key = "software", max = 30, arg = A_SOFTWARE }
  add { name = "Description", kind = "text", key = "description", max = 200, multiline = true }
  if three_d then
    add { name = "ReturnHash", kind = "const", json = "1" }
    add { name = "RedirectUrl", kind = "url", key = "redirect_url" }
    add { name = "RedirectType", kind = "int", key = "redirect_type", min = 0, max = 1, default = 0 }
  else
    -- the payment fields a direct payment takes and does not send
    add { kind = "ignore", key = "redirect_url" }
    add { kind = "ignore", key = "redirect_type" }
  end
  return m
end

local core = require "paykit.core"
local SHAPES = {}
for _, card in ipairs { true, false } do
  for _, three_d in ipairs { true, false } do
    SHAPES[(card and "card" or "token") .. (three_d and "3d" or "")] =
      core.shape { members = shape_members(card, three_d), suffix = "}" }
  end
end
--- The compiled shapes of the usual payment request (`card3d`, `card`, `token3d`, `token`):
-- `paykit.core.shape` values, for @{payment_body} and the differential spec.
_M.SHAPES = SHAPES

--- The payment request as the body to send: @{payment} and the body's blocks in one go.
-- The usual request (a card or a card_token, no integrator_id, buyer, basket or customer)
-- is checked and written by one compiled shape (`paykit.core.shape`), giving the body's text;
-- anything else, and every refusal, goes through @{payment}, which gives today's error (or
-- the request object, for `paykit.providers.moka_wire.call` to wrap). Both give the same bytes.
-- The rest of @{payment}'s info is the caller's to read from p (`reference = p.reference`,
-- `pre_auth = p.pre_auth == true or p.pre_auth == 1`, `installments = p.installments or 1`):
-- no table is made per call.
-- @tparam table self the instance
-- @tparam table p the payment parameters
-- @tparam boolean three_d the 3D request
-- @tparam string path the API path (the body's block names)
-- @treturn string|table the body text, or the request object (a `paykit.gateway.object`)
-- @treturn string amount the checked amount (`money.format`'s text, "27.50")
-- @treturn string currency the wire currency ("TL")
-- @treturn ?boolean true when the first value is the body text (nil for a request object)
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.payment_body(self, p, three_d, path)
  if type(p) == "table" then
    local prefix = self._body_prefix and self._body_prefix(path)
    -- the body in C only with the default writer (a writer set with kit.json.set_encoder is used)
    if prefix and kjson.default_writer() then
      local shape
      if p.card ~= nil then shape = three_d and SHAPES.card3d or SHAPES.card
      else shape = three_d and SHAPES.token3d or SHAPES.token end
      local body, amount, currency = shape:write(p, prefix, self.clock, self.currency, self.client_ip, self.software)
      if body then return body, amount, currency, true end
    end
  end
  local req, info = _M.payment(self, p, three_d)
  if not req then return nil, info end
  return req, info.amount, info.currency
end

-- ------------------------------------------------------------------------------------
-- stored cards (DealerCustomer)

local function customer_ref(p, o)
  local which, err = one_of(p, "dealer_customer_id", "customer_code", "give exactly one of dealer_customer_id and customer_code")
  if not which then return nil, err end
  local ok
  if which == "dealer_customer_id" then ok, err = check_id(p.dealer_customer_id, "dealer_customer_id")
  else ok, err = check_len(p, "customer_code", 100) end
  if not ok then return nil, err end
  if which == "dealer_customer_id" then put(o, "DealerCustomerId", p.dealer_customer_id)
  else put(o, "CustomerCode", p.customer_code) end
  return o
end

local function stored_card(self, p, o)
  local c, err = check_card(self, p.card, true)
  if not c then return nil, err end
  if c.cvc then return nil, V("card.cvc", "not_stored", "a CVC is never stored: leave card.cvc out") end
  put(o, "CardHolderFullName", c.holder or ""); put(o, "CardNumber", c.number)
  put(o, "ExpMonth", c.exp_month); put(o, "ExpYear", c.exp_year)
  local ok
  ok, err = check_len(p, "card_name", 50); if not ok then return nil, err end
  put(o, "CardName", p.card_name or "")
  return o
end


--- Puts VirtualPosOrderId / OtherTrxCode of p into the request object o.
-- (o, p) -> o
-- @function put_reference
_M.put_reference = put_reference

--- Puts the person fields of c into o ("" when absent).
-- (o, c) -> o
-- @function put_person
_M.put_person = put_person

--- Puts DealerCustomerId or CustomerCode (exactly one) into o.
-- (p, o) -> o | nil, err
-- @function customer_ref
_M.customer_ref = customer_ref

--- Puts a card to store (never a CVC) and its CardName into o.
-- (self, p, o) -> o | nil, err
-- @function stored_card
_M.stored_card = stored_card

return _M
