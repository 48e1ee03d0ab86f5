--- Zippy's requests: what is sent, checked before any network call (request building and
-- validation; the wire is `paykit.providers.zippy_wire`, the flow `paykit.providers.zippy`).
--
-- The sellers' and products' CRUD calls are a table of operations (`OPERATIONS`, installed
-- as methods by `paykit.kit.ops`); a transaction's body is built by @{transaction_body}.
-- Every value is checked as `paykit.providers.zippy_fields` and `paykit.kit.checks` say.
-- @module paykit.providers.zippy_request
-- @usage
--   local request = require "paykit.providers.zippy_request"
--   local body, err = request.transaction_body(defaults, {product_id = uuid, price = "0.99", ...})
local core = require "paykit.core"
local errors = require "paykit.errors"
local money = require "paykit.money"
local kit = require "paykit.kit"
local check = require "paykit.providers.zippy_fields"
local checks = require "paykit.kit.checks"

local _M = {}

local find = string.find

local CURRENCY_LIST = "AUD CAD CHF COP DKK EGP EUR GBP HUF IDR MXN MYR NOK NZD PHP PLN QAR SEK SGD THB USD ZAR"
_M.CURRENCY_LIST = CURRENCY_LIST
_M.CURRENCIES = {}
for c in CURRENCY_LIST:gmatch("%u+") do _M.CURRENCIES[c] = true end
_M.PAY_METHODS = { CARD = true, OPERATOR = true }
_M.SELLER_STATUSES = { ACTIVE = true, INACTIVE = true, DISABLED = true }

_M.SELLER_FIELDS = { uuid = true, status = true, name = true, email = true, agreement = true }
_M.PRODUCT_FIELDS = { uuid = true, name = true, external_id = true, seller_id = true }
_M.TX_FIELDS = {
  product_id = true, region = true, carrier = true, price = true, price_minor = true, currency = true, pay_method = true,
  success_url = true, error_url = true, callback_success_url = true, callback_error_url = true,
  ext_transaction_id = true, product_image_url = true,
}
_M.TX_URLS = { "success_url", "error_url", "callback_success_url", "callback_error_url" }
-- the browser's way back: Zippy appends "?" .. notice, so a #fragment would swallow it
local RETURN_URLS = { success_url = true, error_url = true }

--- Checks a seller's fields; `partial` lets the required ones be absent.
-- @tparam table s the fields
-- @tparam[opt] boolean partial
-- @return nil or a validation error
function _M.check_seller(s, partial)
  local rules = { { "uuid", checks.key }, { "status" }, { "name", checks.text }, { "email", checks.email } }
  for _, r in ipairs(rules) do
    local k, rule = r[1], r[2]
    if not partial or s[k] ~= nil then
      if k == "status" then
        if not _M.SELLER_STATUSES[s.status] then
          return errors.validation("status", s.status == nil and "required" or "invalid",
            "status must be ACTIVE, INACTIVE or DISABLED")
        end
      else
        local e = rule(s[k], k); if e then return e end
      end
    end
  end
  if s.agreement ~= nil then return checks.date(s.agreement, "agreement") end
end

local function seller_body(_, s)
  local e = _M.check_seller(s)
  if e then return nil, e end
  return s
end

local function product_body(_, p)
  local e = checks.uuid(p.uuid, "uuid") or checks.text(p.name, "name")
    or checks.text(p.external_id, "external_id") or checks.key(p.seller_id, "seller_id")
  if e then return nil, e end
  return p
end

--- The CRUD calls as data (see `paykit.kit.ops`). Each answers Zippy's decoded JSON (true for
-- an empty answer) or nil, err.
_M.OPERATIONS = {
  create_seller = { method = "POST", path = "/sellers", idempotent = true, what = "seller",
    fields = _M.SELLER_FIELDS, body = seller_body },
  get_seller = { method = "GET", path = "/sellers/:uuid", args = { uuid = checks.key } },
  list_sellers = { method = "GET", path = "/sellers" },
  delete_seller = { method = "DELETE", path = "/sellers/:uuid", args = { uuid = checks.key } },
  get_terms = { method = "GET", path = "/terms/:uuid", args = { uuid = checks.key } }, -- the seller's uuid
  create_product = { method = "POST", path = "/products", idempotent = true, what = "product",
    fields = _M.PRODUCT_FIELDS, body = product_body },
  get_product = { method = "GET", path = "/products/:uuid", args = { uuid = checks.uuid } },
  list_products = { method = "GET", path = "/products",
    filter = { seller_id = checks.key, external_id = function(v, f) return checks.text(v, f) end } },
}

--- The whole seller to PUT: `current` (as Zippy holds it) with `changes` merged in.
-- Zippy's PUT is a full replacement (every field left out is blanked), so every field is sent.
-- @tparam string uuid the seller's
-- @tparam table changes checked already (partial)
-- @tparam table current what GET answered
-- @treturn table the body
-- @return[2] nil
-- @return[2] a validation error (a required field neither changed nor held by Zippy)
function _M.full_seller(uuid, changes, current)
  local full = {}
  for k in pairs(_M.SELLER_FIELDS) do
    local v = changes[k]
    if v == nil and type(current[k]) == "string" and current[k] ~= "" then v = current[k] end
    full[k] = v
  end
  full.uuid = uuid
  local err = _M.check_seller(full)
  if err then
    err.message = err.message .. " (Zippy holds none for this seller: give it in changes)"
    return nil, err
  end
  return full
end

-- the caller's name of a field (for errors), made without a closure per call
local NO_NAMES, NO_FRAGMENT = {}, { no_fragment = true }
local function name_of(names, k) return names[k] or k end
local function or_default(v, d) if v == nil then return d end return v end

--- Checks and normalises a transaction; returns the JSON body or nil, err. No network.
-- @tparam table defaults the instance's default URLs (`success_url`, ...)
-- @tparam table t `product_id` (a UUID string), `price` (decimal string, more than zero; sent
--   as "0.00") or `price_minor`, `currency` (one of `CURRENCIES`), `pay_method` (CARD or
--   OPERATOR), `carrier`, `region` (the buyer's MCC), `ext_transaction_id`, the four URLs,
--   `product_image_url`
-- @tparam[opt] table names the caller's names of the fields, for the errors
-- @treturn table the request body
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.transaction_body(defaults, t, names)
  names = names or NO_NAMES
  local fields, err = kit.fields(t, _M.TX_FIELDS, "transaction")
  if not fields then return nil, err end
  -- the body made at its size in one constructor (every TX_FIELDS name), the instance's
  -- default URLs where the transaction gives none
  local f = fields
  local body = {
    product_id = f.product_id, region = f.region, carrier = f.carrier, price = f.price,
    price_minor = f.price_minor, currency = f.currency, pay_method = f.pay_method,
    success_url = or_default(f.success_url, defaults.success_url),
    error_url = or_default(f.error_url, defaults.error_url),
    callback_success_url = or_default(f.callback_success_url, defaults.callback_success_url),
    callback_error_url = or_default(f.callback_error_url, defaults.callback_error_url),
    ext_transaction_id = f.ext_transaction_id, product_image_url = f.product_image_url,
  }
  local e = checks.uuid(body.product_id, "product_id")
  if e then return nil, e end
  if type(body.currency) ~= "string" or not _M.CURRENCIES[body.currency] then
    return nil, errors.validation("currency", body.currency == nil and "required" or "unsupported_currency",
      "currency must be one of Zippy's: " .. CURRENCY_LIST)
  end
  if body.price_minor ~= nil then -- minor units, an integer: the same price as a decimal
    if body.price ~= nil then
      return nil, errors.validation(name_of(names, "price"), "conflict",
        "give " .. name_of(names, "price") .. " or " .. name_of(names, "price_minor") .. ", not both")
    end
    local minor, dec = money.parse_minor(body.price_minor, body.currency, name_of(names, "price_minor"), true)
    if not minor then return nil, dec end
    body.price, body.price_minor = dec, nil
  end
  body.price, err = check.price(body.price, body.currency, name_of(names, "price"))
  if not body.price then return nil, err end
  if not _M.PAY_METHODS[body.pay_method] then
    return nil, errors.validation("pay_method", body.pay_method == nil and "required" or "invalid",
      "pay_method must be CARD or OPERATOR")
  end
  e = checks.text(body.carrier, "carrier") or checks.text(body.ext_transaction_id, name_of(names, "ext_transaction_id"))
  if e then return nil, e end
  body.region, err = check.region(body.region, "region")
  if not body.region then return nil, err end
  local urls = _M.TX_URLS
  for i = 1, #urls do
    local k = urls[i]
    e = check.url(body[k], name_of(names, k), RETURN_URLS[k] and NO_FRAGMENT or nil)
    if e then return nil, e end
  end
  if body.product_image_url ~= nil then
    e = check.url(body.product_image_url, "product_image_url")
    if e then return nil, e end
  end
  return body
end

-- the currencies Zippy takes that paykit prices with two decimals (check.price refuses others)
local PRICED = {}
for c in pairs(_M.CURRENCIES) do if money.exponent(c) == 2 then PRICED[c] = true end end
_M.PRICED = PRICED
local fast_tx = core.zippy_transaction
local GOOD_MAX = 256

--- A transaction's JSON body when it is the common case, in one C call
-- (`paykit.core.zippy_transaction`): the same bytes as `paykit.kit.json.encode` of
-- @{transaction_body}'s table. Answers nil for anything else (the caller then takes
-- @{transaction_body}, which gives the errors, and @{remember_urls} on success).
-- @tparam table defaults the instance's default URLs
-- @param t the transaction's fields
-- @tparam table good the URLs already found valid (URL -> flags: @{remember_urls}; [0] their count)
-- @treturn ?string the JSON text
function _M.transaction_json(defaults, t, good)
  return (fast_tx(t, defaults, good, PRICED))
end

--- Remembers the URLs of a body @{transaction_body} made (they passed every check), for
-- @{transaction_json}, with the flags it reads; at most 256 are kept (the set is emptied when
-- full).
-- @tparam table good the instance's set
-- @tparam table body a checked transaction body
function _M.remember_urls(good, body)
  for i = 1, #_M.TX_URLS + 1 do
    local u = body[_M.TX_URLS[i] or "product_image_url"]
    if u ~= nil and not good[u] then
      local n = good[0] or 0 -- the count, under a key no URL can be
      if n >= GOOD_MAX then
        for k in pairs(good) do good[k] = nil end
        n = 0
      end
      -- the flags the C path reads: 1 printable ASCII without '"' or '\' (else it leaves the
      -- URL to these checks), 2 a "#" (not for the browser's return URLs)
      local flags = (find(u, '[^\32-\126]') or find(u, '["\\]')) and 0 or 1
      if find(u, "#", 1, true) then flags = flags + 2 end
      good[u], good[0] = flags, n + 1
    end
  end
end

-- purchase's uniform names, each standing for Zippy's
local ALIASES = {
  { "amount", { "price" } }, { "amount_minor", { "price_minor" } }, { "reference", { "ext_transaction_id" } },
  -- return_url: the buyer's way back, for success and error alike; notify_url: the
  -- server-to-server callback, for both outcomes
  { "return_url", { "success_url", "error_url" } },
  { "notify_url", { "callback_success_url", "callback_error_url" } },
}

--- A purchase's fields in Zippy's names. Returns t (a copy), names (Zippy's field -> the
-- caller's name, for errors), or nil, err. Giving a uniform name and Zippy's is ambiguous.
-- @tparam table p the purchase's fields
-- @treturn table the transaction's fields
-- @treturn table names
-- @return[2] nil
-- @return[2] a validation error
function _M.purchase_fields(p)
  if type(p) ~= "table" then return nil, errors.validation("purchase", "invalid", "purchase expects a table") end
  local allowed = {}
  for k in pairs(_M.TX_FIELDS) do allowed[k] = true end
  for _, a in ipairs(ALIASES) do allowed[a[1]] = true end
  local ok, err = kit.fields(p, allowed, "purchase")
  if not ok then return nil, err end
  local t, names = {}, {}
  for k, v in pairs(p) do t[k] = v end
  if (t.amount ~= nil or t.amount_minor ~= nil) and (t.price ~= nil or t.price_minor ~= nil) then
    return nil, errors.validation("amount", "invalid", "give amount (or amount_minor) or price, not both")
  end
  for _, a in ipairs(ALIASES) do
    local uniform, zippy_names = a[1], a[2]
    if t[uniform] ~= nil then
      for _, z in ipairs(zippy_names) do
        if t[z] ~= nil then
          return nil, errors.validation(uniform, "conflict", "give " .. uniform .. " or " .. z .. ", not both")
        end
      end
      for _, z in ipairs(zippy_names) do t[z], names[z] = t[uniform], uniform end
      t[uniform] = nil
    end
  end
  -- named as the uniform flow names them when the caller gave neither
  if t.price == nil then names.price = "amount" end
  if t.price_minor == nil then names.price_minor = "amount_minor" end
  if t.ext_transaction_id == nil then names.ext_transaction_id = "reference" end
  return t, names
end

--- Remembers the price of a reference, refusing another price for it.
-- Zippy's notice names only ext_transaction_id, so two transactions of one reference at two
-- prices could not be told apart when one of them is paid: the instance refuses to start a
-- transaction for a reference it started at another price or currency. The claim is made
-- before the request (which yields), so concurrent purchases cannot both pass.
-- @tparam table references a `paykit.gateway.seen` of reference -> "price currency"
-- @tparam table body a checked transaction body
-- @tparam[opt="ext_transaction_id"] string field the caller's name of the id, for the error
-- @return nil, or a validation error `reused`
function _M.claim_reference(references, body, field)
  local price = body.price .. " " .. body.currency
  local before = references:get(body.ext_transaction_id)
  if before ~= nil then
    -- held with this price already (add would keep it as it is)
    if before == price then return nil end
    field = field or "ext_transaction_id"
    return errors.validation(field, "reused", field .. " was used for a transaction of " .. before ..
      " already: a new price needs a new reference (Zippy's notice names only the reference, not the price)")
  end
  references:add(body.ext_transaction_id, price)
end

return _M
