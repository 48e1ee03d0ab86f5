--- paykit.providers.moka: Moka (Moka United) card payments, 3D Secure included.
--
-- Every call validates its input before any network call; errors name their field
-- ("card.number", "installments", ...). A bank decline is a result with status "failed".
--
-- Notification field names are UNCONFIRMED upstream: they are matched case-insensitively
-- and can be replaced with opts.fields = {hash = {...}, result_code = {...}, ...}.
--
-- Module fields: `codes` (`paykit.providers.moka_codes`), `HOSTS` (`test`, `production` base
-- URLs), `CURRENCIES` (TL, USD, EUR, GBP), `PAYMENT_STATUS` (Moka's PaymentStatus number to
-- a result status).
--
-- The payment parameters `p` of @{Moka:start_3d}, @{Moka:pay} and @{Moka:purchase}:
--
--  * `amount` decimal string ("27.50"), or `amount_minor` integer minor units (2750); greater
--    than zero; a Lua number in `amount` is refused (27 could mean 27.00 or 0.27)
--  * `currency` TL (or TRY), USD, EUR or GBP; default the instance's `currency`
--  * `card` `{number=, exp_month=, exp_year= (YYYY or YY), cvc= (3 or 4 digits), holder=}`,
--   or `card_token` (a stored card's CardToken): exactly one of them
--  * `client_ip` the buyer's IP address, IPv4 or IPv6 in strict text form (default the
--   instance's `client_ip`; required)
--  * `reference` your unique OtherTrxCode (at most 64 characters)
--  * `redirect_url` where the buyer comes back after 3D (3D only, required), `redirect_type`
--   0 (page, default) or 1 (iframe)
--  * `installments` 0 to 12 (0 or 1: a single payment; more only in TL)
--  * `pre_auth` (authorize only, capture later), `pool` (pool payment), `tokenize` (store the
--   card; not with card_token)
--  * `description` (200), `sub_merchant` (100), `software` (30), `integrator_id` (integer)
--  * `basket` `{{product_id= or product_code=, unit_price=, quantity=}, ...}`: the total must
--   equal the amount
--  * `buyer` `{full_name=, gsm=, email=, address=}`
--  * `customer` `{dealer_customer_id=, customer_code=, first_name=, last_name=, gender=,`
--   `birth_date=, gsm=, email=, address=, card_name=}`
--
-- After-sale calls (@{Moka:capture}, @{Moka:void}, @{Moka:refund}, @{Moka:approve_pool},
-- @{Moka:undo_pool}) name the payment with exactly one of `order_id` (Moka's
-- VirtualPosOrderId) and `reference` (your OtherTrxCode). Capture and void also carry a
-- `client_ip` (the caller's, or the instance's default: DoCapture and DoVoid have a ClientIP
-- field, and paykit never makes one up).
--
-- Answers are read fail-closed: "paid" only for outer ResultCode "Success" with
-- `Data.IsSuccessful` the JSON boolean true, no bank code and the fields the result needs;
-- anything else that is not a decline is `moka.invalid_response`. The 3D hash covers only the
-- CodeForHash and the outcome, so a 3D result belongs to the kept order (`keep.reference`),
-- and `confirm` asks Moka before saying "paid".
-- @module paykit.providers.moka
-- @usage
--   local gw = require("paykit").moka{dealer_code = "...", username = "...", password = "...",
--                                     env = "test"}            -- or base_url = "http://..."
--   local r = gw:start_3d{amount = "27.50", card = {holder = "Ali Yilmaz", number = "4111111111111111",
--                         exp_month = "09", exp_year = "2030", cvc = "123"},
--                         client_ip = "203.0.113.7", redirect_url = "https://shop.example/return?o=1"}
--   -- r.status == "redirect": send the buyer to r.redirect_url, store r.keep (CodeForHash!)
--   local res, err = gw:verify_3d(posted_form, r.keep.code_for_hash)
local errors = require "paykit.errors"
local money = require "paykit.money"
local gateway = require "paykit.gateway"
local url = require "paykit.url"
local codes = require "paykit.providers.moka_codes"
local checks = require "paykit.kit.checks"
local signature = require "paykit.kit.signature"
local luhn = require("paykit.redact").luhn
-- the RFC-strict IPv4/IPv6 text parser (inet_pton rules) of the kit's checks
local is_ip = checks.is_ip
local null = require("cjson").null

local _M = { codes = codes }
local Moka = {}
Moka.__index = Moka
Moka.__tostring = function(self) return "paykit.moka(" .. self.base_url .. ")" end

_M.HOSTS = {
  test = "https://service.refmokaunited.com",
  production = "https://service.mokaunited.com",
}

_M.CURRENCIES = { TL = true, USD = true, EUR = true, GBP = true }

-- The VoidRefundReason values of DoVoid that Moka's pages publish: only 2. Other values are
-- UNCONFIRMED; an instance takes more with opts.void_reasons = {...}.
_M.VOID_REASONS = { 2 }

local DEFAULT_FIELDS = {
  hash = { "hashValue" },
  result_code = { "resultCode" },
  result_message = { "resultMessage" },
  trx_code = { "trxCode" },
  other_trx_code = { "OtherTrxCode" },
}

local core_mod
local function core()
  if not core_mod then core_mod = require "paykit.core" end
  return core_mod
end

local V = errors.validation
local obj, put, dec = gateway.object, gateway.put, gateway.decimal

local function is_blank(s) return s == nil or s == "" end

local function utf8_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- Moka's CheckKey for a set of credentials.
-- CheckKey = lower-hex SHA-256(DealerCode .. "MK" .. Username .. "PD" .. Password)
-- @tparam string dealer_code
-- @tparam string username
-- @tparam string password
-- @treturn string 64 lowercase hex digits
function _M.check_key(dealer_code, username, password)
  return core().digest("sha256", dealer_code .. "MK" .. username .. "PD" .. password, "hex")
end

--- The hashValue Moka sends back for a CodeForHash: success ("T") or failure ("F").
-- hashValue = lower-hex SHA-256(upper(CodeForHash) .. "T" or "F")
-- @tparam string code_for_hash the CodeForHash of the 3D start
-- @tparam boolean success which outcome
-- @treturn string 64 lowercase hex digits
function _M.hash_3d(code_for_hash, success)
  return core().digest("sha256", tostring(code_for_hash):upper() .. (success and "T" or "F"), "hex")
end

-- ------------------------------------------------------------------------------------
-- construction

--- A Moka instance.
-- The credentials are kept in a closure: printing or inspecting the instance shows none.
-- @tparam table opts
--
--  * `dealer_code`, `username`, `password` (required) issued by Moka
--  * `env` "test" (default) or "production", or `base_url` an absolute http(s) URL
--  * `software` (at most 30 characters, default "paykit"), `client_ip` (the payments' default),
--   `currency` (default "TL")
--  * `lookup` function(other_trx_code, trx_code) -> keep (or code_for_hash), for @{Moka:notification}
--  * `confirm` true: @{Moka:complete} and @{Moka:notification} ask Moka before saying "paid"
--   (default false; per call with opts.confirm)
--  * `void_reasons` the VoidRefundReason values @{Moka:void} takes (default `{2}`, the one Moka
--   publishes; others are UNCONFIRMED)
--  * `fields` replacement notification field names: `hash`, `result_code`, `result_message`,
--   `trx_code`, `other_trx_code` (each a name or a list of names)
--  * `clock` function -> unix seconds (card expiry checks; default os.time)
--  * transport: `logger`, `hooks`, `timeout`, `connect_timeout`, `retry`, `verify_tls`,
--   `cafile`, `capath`, `max_response`, `user_agent`, `sleep` (see `paykit.http.new`), or
--   `transport`; `duplicate_capacity` (default 1024)
-- @treturn Moka the instance
-- @return[2] nil
-- @return[2] a config error naming the option
function _M.new(opts)
  if type(opts) ~= "table" then
    return nil, errors.config("opts", "required", "paykit.moka needs a table of options")
  end
  for _, k in ipairs { "dealer_code", "username", "password" } do
    if type(opts[k]) ~= "string" or opts[k] == "" then
      return nil, errors.config(k, "required", k .. " is required (a non-empty string issued by Moka)")
    end
  end
  local base_url = opts.base_url
  if base_url == nil then
    local env = opts.env or "test"
    base_url = _M.HOSTS[env]
    if not base_url then
      return nil, errors.config("env", "invalid", "env must be \"test\" or \"production\" (or give base_url)")
    end
  elseif not url.is_http(base_url) then
    return nil, errors.config("base_url", "invalid", "base_url must be an absolute http(s) URL")
  end
  base_url = base_url:gsub("/+$", "")
  if opts.software ~= nil and (type(opts.software) ~= "string" or utf8_len(opts.software) > 30) then
    return nil, errors.config("software", "too_long", "software must be a string of at most 30 characters")
  end
  if opts.lookup ~= nil and type(opts.lookup) ~= "function" then
    return nil, errors.config("lookup", "invalid", "lookup must be a function(other_trx_code) -> code_for_hash")
  end
  if opts.client_ip ~= nil and not is_ip(opts.client_ip) then
    return nil, errors.config("client_ip", "invalid", "client_ip must be an IPv4 or IPv6 address")
  end
  if opts.confirm ~= nil and type(opts.confirm) ~= "boolean" then
    return nil, errors.config("confirm", "invalid", "confirm must be true or false")
  end
  local void_reasons = {}
  for _, v in ipairs(opts.void_reasons or _M.VOID_REASONS) do
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 then
      return nil, errors.config("void_reasons", "invalid", "void_reasons must be a list of integers")
    end
    void_reasons[v] = true
  end
  local fields = {}
  for k, v in pairs(DEFAULT_FIELDS) do fields[k] = v end
  for k, v in pairs(opts.fields or {}) do
    if not DEFAULT_FIELDS[k] then
      return nil, errors.config("fields." .. tostring(k), "unknown", "unknown notification field " .. tostring(k))
    end
    fields[k] = type(v) == "string" and { v } or v
  end

  local ok, base = pcall(gateway.base, "moka", opts)
  if not ok then
    return nil, errors.is(base) and base or errors.config("opts", "invalid", tostring(base))
  end
  -- Credentials live in a closure, so printing or inspecting the instance shows none.
  local dealer_code, username, password = opts.dealer_code, opts.username, opts.password
  local check_key
  local function auth()
    check_key = check_key or _M.check_key(dealer_code, username, password)
    return put(put(put(put(obj(), "DealerCode", dealer_code), "Username", username),
      "Password", password), "CheckKey", check_key)
  end
  local self = {
    provider = "moka",
    base_url = base_url,
    dealer_code = dealer_code,
    software = opts.software or "paykit",
    client_ip = opts.client_ip,
    currency = opts.currency or "TL",
    lookup = opts.lookup,
    confirm = opts.confirm or false,
    void_reasons = void_reasons,
    fields = fields,
    clock = opts.clock or os.time,
    log = base.log,
    http = base.http,
    seen = base.seen,
    _auth = auth,
  }
  return setmetatable(self, Moka)
end

-- ------------------------------------------------------------------------------------
-- validation helpers (each returns the wire value or nil, err)

local function currency_of(self, c)
  c = c or self.currency
  if type(c) ~= "string" then return nil, V("currency", "invalid", "currency must be TL, USD, EUR or GBP") end
  c = c:upper()
  if c == "TRY" then c = "TL" end
  if not _M.CURRENCIES[c] then
    return nil, V("currency", "unsupported_currency", "Moka takes TL (TRY), USD, EUR or GBP, not " .. c)
  end
  return c
end

local function amount_of(t, key, currency, field, allow_zero)
  local minor, text = money.read(t, key, currency == "TL" and "TRY" or currency, field, not allow_zero)
  if not minor then return nil, text end
  return text, minor
end

-- stored: a card to store, which may (and then must) come without a CVC
local function check_card(self, card, stored)
  local field = "card"
  if type(card) ~= "table" then return nil, V(field, "required", field .. " is required") end
  local number = card.number
  if type(number) == "number" then
    return nil, V(field .. ".number", "invalid", "the card number must be a string of digits")
  end
  if type(number) ~= "string" or number == "" then
    return nil, V(field .. ".number", "required", "the card number is required")
  end
  number = number:gsub("[ %-]", "")
  if not number:match("^%d+$") then
    return nil, V(field .. ".number", "not_digits", "the card number must contain only digits")
  end
  if #number < 12 or #number > 19 then
    return nil, V(field .. ".number", "invalid_length", "the card number must have 12 to 19 digits")
  end
  if not luhn(number) then
    return nil, V(field .. ".number", "invalid_luhn", "the card number fails the Luhn check (mistyped?)")
  end
  local m = tonumber(card.exp_month)
  if not m or m ~= math.floor(m) or m < 1 or m > 12 or not tostring(card.exp_month):match("^%d%d?$") then
    return nil, V(field .. ".exp_month", "invalid", "the expiry month must be 1 to 12")
  end
  local ys = tostring(card.exp_year or "")
  if not (ys:match("^%d%d%d%d$") or ys:match("^%d%d$")) then
    return nil, V(field .. ".exp_year", "invalid", "the expiry year must be YYYY (or YY)")
  end
  local y = tonumber(ys)
  if y < 100 then y = 2000 + y end
  local now = os.date("!*t", self.clock())
  if y < now.year or (y == now.year and m < now.month) then
    return nil, V(field .. ".exp_year", "expired", "the card has expired")
  end
  local out = { number = number, exp_month = string.format("%02d", m), exp_year = string.format("%04d", y) }
  if card.cvc ~= nil or not stored then
    local cvc = card.cvc
    if type(cvc) ~= "string" or not cvc:match("^%d%d%d%d?$") then
      return nil, V(field .. ".cvc", "invalid", "the CVC must be 3 or 4 digits")
    end
    out.cvc = cvc
  end
  if card.holder ~= nil then
    if type(card.holder) ~= "string" or utf8_len(card.holder) > 100 then
      return nil, V(field .. ".holder", "invalid", "the card holder must be a string of at most 100 characters")
    end
    out.holder = card.holder
  end
  return out
end

-- p[key] absent, or a string of at most max characters without control characters
-- (multiline: tab, CR and LF allowed). Returns true | nil, err naming field (default key).
local function check_len(p, key, max, field, multiline)
  local v = p[key]
  field = field or key
  if v == nil then return true end
  if type(v) ~= "string" then return nil, V(field, "invalid", field .. " must be a string") end
  if utf8_len(v) > max then
    return nil, V(field, "too_long", field .. " must be at most " .. max .. " characters")
  end
  if (multiline and v:find("[%z\1-\8\11\12\14-\31\127]")) or (not multiline and v:find("%c")) then
    return nil, V(field, "control_character", field .. " must not contain control characters")
  end
  return true
end

-- Each of keys in t (absent, or a string of at most max characters), fields named prefix .. key.
local function check_texts(t, keys, max, prefix)
  for _, k in ipairs(keys) do
    local ok, err = check_len(t, k, max, prefix .. k)
    if not ok then return nil, err end
  end
  return true
end

-- A yes/no option: absent, a boolean, or 0/1. Returns 0 or 1 | nil, err.
local function flag_of(p, key)
  local v = p[key]
  if v == nil or v == false or v == 0 then return 0 end
  if v == true or v == 1 then return 1 end
  return nil, V(key, "invalid", key .. " must be true or false")
end

-- An identifier Moka gave (DealerPaymentId, DealerCustomerId): a string without control
-- characters or an integer. Returns true | nil, err.
local function check_id(v, field)
  if v == nil then return true end
  if type(v) == "number" and v == math.floor(v) and v >= 0 then return true end
  if type(v) == "string" and #v <= 64 and not v:find("%c") then return true end
  return nil, V(field, "invalid", field .. " must be a string (or an integer id) of at most 64 characters")
end

-- exactly one of p[a] and p[b] given (not blank): returns the name of the one given | nil, err
-- (the first name "ambiguous" when both are given, the second "required" when neither is)
local function one_of(p, a, b, message)
  local has_a, has_b = not is_blank(p[a]), not is_blank(p[b])
  if has_a == has_b then return nil, V(has_a and a or b, has_a and "ambiguous" or "required", message) end
  return has_a and a or b
end

-- exactly one of order_id (VirtualPosOrderId) / reference (OtherTrxCode)
local function one_reference(p)
  local ok, err = one_of(p, "order_id", "reference",
    "give exactly one of order_id (Moka's VirtualPosOrderId) and reference (your OtherTrxCode)")
  if not ok then return nil, err end
  for _, k in ipairs { "order_id", "reference" } do
    ok, err = check_len(p, k, 64)
    if not ok then return nil, err end
  end
  return true
end

local function put_reference(o, p)
  if not is_blank(p.order_id) then put(o, "VirtualPosOrderId", p.order_id) end
  if not is_blank(p.reference) then put(o, "OtherTrxCode", p.reference) end
  return o
end

-- The ClientIP of a call: p.client_ip, else the instance's default; an IPv4 or IPv6 address
-- in its strict text form (dotted quad without leading zeros, RFC 4291 groups), never made up.
local function client_ip(self, p)
  local ip = p.client_ip
  if ip == nil then ip = self.client_ip end
  if ip == nil then
    return nil, V("client_ip", "required", "client_ip (the buyer's IP address) is required")
  end
  local err = checks.ip(ip, "client_ip")
  if err then return nil, err end
  return ip
end

local PERSON = { "first_name", "last_name", "birth_date", "gsm", "email", "address", "card_name",
  "customer_code", "customer_password" }

-- The person fields of CustomerInformation and AddCustomerWithCard, each absent or a short
-- string (gender also 0/1/2 as a number). Returns true | nil, err (field prefix .. name).
local function check_person(c, prefix)
  local ok, err = check_texts(c, PERSON, 100, prefix)
  if not ok then return nil, err end
  local gd = c.gender
  if gd ~= nil and not ((type(gd) == "string" and #gd <= 2 and not gd:find("%c"))
      or (type(gd) == "number" and gd == math.floor(gd) and gd >= 0 and gd <= 9)) then
    return nil, V(prefix .. "gender", "invalid", prefix .. "gender must be a short string or a number")
  end
  return check_id(c.dealer_customer_id, prefix .. "dealer_customer_id")
end

-- The person fields of CustomerInformation and AddCustomerWithCard ("" when absent).
local function put_person(o, c)
  put(o, "FirstName", c.first_name or ""); put(o, "LastName", c.last_name or "")
  put(o, "Gender", c.gender and tostring(c.gender) or ""); put(o, "BirthDate", c.birth_date or "")
  put(o, "GsmNumber", c.gsm or ""); put(o, "Email", c.email or ""); put(o, "Address", c.address or "")
  return o
end

-- The payment request (DoDirectPayment / DoDirectPaymentThreeD): validated, as a JSON object.
local function payment_request(self, p, three_d)
  if type(p) ~= "table" then return nil, V("params", "required", "payment parameters are required") end
  local currency, err = currency_of(self, p.currency)
  if not currency then return nil, err end
  local amount, minor = amount_of(p, "amount", currency, "amount")
  if not amount then return nil, minor end

  local has_card, has_token = p.card ~= nil, not is_blank(p.card_token)
  if has_card == has_token then
    return nil, V(has_card and "card_token" or "card", has_card and "ambiguous" or "required",
      "give either card (number, expiry, CVC) or card_token, not both")
  end
  local card
  if has_card then
    card, err = check_card(self, p.card)
    if not card then return nil, err end
  elseif type(p.card_token) ~= "string" or #p.card_token > 64 or p.card_token:find("[%c%s]") then
    return nil, V("card_token", "invalid", "card_token must be a stored card's CardToken (a string of at most 64 characters)")
  elseif p.tokenize then
    return nil, V("tokenize", "card_token_with_save_card", "a card token cannot be used when the card is to be stored")
  end

  local inst = p.installments or 1
  if type(inst) ~= "number" or inst ~= math.floor(inst) or inst < 0 or inst > 12 then
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
  local flags = {}
  for _, k in ipairs { "pool", "pre_auth", "tokenize" } do
    flags[k], err = flag_of(p, k)
    if not flags[k] then return nil, err end
  end
  if three_d then
    local u = p.redirect_url
    if not url.is_http(u) then
      return nil, V("redirect_url", u == nil and "required" or "invalid", "redirect_url must be an absolute http(s) URL")
    end
    if p.redirect_type ~= nil and p.redirect_type ~= 0 and p.redirect_type ~= 1 then
      return nil, V("redirect_type", "invalid", "redirect_type must be 0 (page) or 1 (iframe)")
    end
  end
  local iid = p.integrator_id
  if iid ~= nil and (type(iid) ~= "number" or iid ~= math.floor(iid) or iid < 0 or iid > 255) then
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

  local r = obj()
  if card then
    put(r, "CardHolderFullName", card.holder or "")
    put(r, "CardNumber", card.number); put(r, "ExpMonth", card.exp_month); put(r, "ExpYear", card.exp_year)
    put(r, "CvcNumber", card.cvc or "")
    put(r, "CardToken", "")
  else
    put(r, "CardHolderFullName", ""); put(r, "CardNumber", ""); put(r, "ExpMonth", ""); put(r, "ExpYear", "")
    put(r, "CvcNumber", "")
    put(r, "CardToken", p.card_token)
  end
  put(r, "Amount", dec(amount))
  put(r, "Currency", currency)
  put(r, "InstallmentNumber", inst)
  put(r, "ClientIP", ip)
  put(r, "OtherTrxCode", p.reference or "")
  put(r, "SubMerchantName", p.sub_merchant or "")
  put(r, "IsPoolPayment", flags.pool)
  put(r, "IsPreAuth", flags.pre_auth)
  put(r, "IsTokenized", flags.tokenize)
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
  return r, { amount = amount, currency = currency, reference = p.reference, installments = inst,
    pre_auth = flags.pre_auth == 1 }
end
_M._payment_request = payment_request

-- ------------------------------------------------------------------------------------
-- the wire

local function blocks(path)
  if path:find("^/DealerCustomer/") then return "DealerCustomerAuthentication", "DealerCustomerRequest" end
  if path == "/PaymentDealer/GetBankCardInformation" then return "PaymentDealerAuthentication", "BankCardInformationRequest" end
  return "PaymentDealerAuthentication", "PaymentDealerRequest"
end

local function denull(v)
  if v == nil or v == null then return nil end
  return v
end

--- A Moka instance (from @{new}); every method below returns `nil, err` on failure.
-- @type Moka

--- One authenticated API call (the building block of the other methods).
-- POST {base}{path}; returns Data (nil when null), the decoded body | nil, err
-- @tparam string op the operation name for logs and errors, e.g. "capture"
-- @tparam string path the API path, e.g. "/PaymentDealer/DoCapture"
-- @tparam table payload the request block (a `paykit.gateway.object`)
-- @tparam boolean idempotent whether a request that may have been sent can be retried
-- @return Data of the answer (nil when null)
-- @treturn table the decoded answer
-- @return[2] nil
-- @return[2] an error: transport/timeout, provider ("moka.http_NNN", "moka.invalid_response"),
--   or the kind and code of a refusing ResultCode (`paykit.providers.moka_codes.result`)
function Moka:call(op, path, payload, idempotent)
  local auth_name, req_name = blocks(path)
  local body = gateway.json(put(put(obj(), auth_name, self._auth()), req_name, payload))
  local res, err = self.http:request {
    method = "POST", url = self.base_url .. path, body = body, json = true,
    op = "moka." .. op, idempotent = idempotent and true or false,
  }
  if not res then
    self.log("error", "moka." .. op .. " failed: " .. tostring(err))
    return nil, err
  end
  if res.status ~= 200 then
    local e = errors.provider {
      code = "moka.http_" .. res.status, status = res.status, op = "moka." .. op,
      retryable = res.status >= 500 and idempotent and true or false,
      message = "Moka answered HTTP " .. res.status .. " to " .. op ..
        (res.status >= 500 and "; the outcome is unknown: check it with status()" or ""),
    }
    self.log("error", "moka." .. op .. " failed: " .. tostring(e))
    return nil, e
  end
  local j = res.json
  if type(j) ~= "table" or type(j.ResultCode) ~= "string" then
    local e = errors.provider { code = "moka.invalid_response", status = res.status, op = "moka." .. op,
      message = "Moka's answer to " .. op .. " is not the expected JSON envelope" }
    self.log("error", "moka." .. op .. " failed: " .. tostring(e))
    return nil, e
  end
  local rc = j.ResultCode:match("^%s*(.-)%s*$")
  if rc ~= "Success" then
    local kind, code, message = codes.result(rc)
    if code == "moka.invalid_auth_request" and self._auth_ok then
      -- these credentials were accepted before, so the request object is the likely fault
      kind, code, message = codes.invalid_request_after_auth()
    end
    local pm = denull(j.ResultMessage)
    local e = errors.new { kind = kind, code = code, op = "moka." .. op, status = res.status,
      provider = "moka", provider_code = rc, provider_message = pm and tostring(pm) or nil,
      message = message .. (pm and pm ~= "" and (" (" .. tostring(pm) .. ")") or "") }
    self.log("warn", "moka." .. op .. " refused: " .. rc)
    return nil, e
  end
  self._auth_ok = true
  self.log("info", "moka." .. op .. " ok")
  return denull(j.Data), j
end

-- The error for a Success answer that lacks what paykit needs to read it.
local function invalid(op, message, maybe_done)
  return errors.provider { code = "moka.invalid_response", op = "moka." .. op, retryable = false,
    message = "Moka's answer to " .. op .. " " .. message ..
      (maybe_done and ": the outcome is unknown, check it with status() or payment_details()" or "") }
end

-- A call answered with Moka's Data block: the block (a table; `accept_true`: or true) | nil, err
local function data_call(self, op, path, payload, idempotent, accept_true)
  local data, raw = self:call(op, path, payload, idempotent)
  if data == nil and errors.is(raw) then return nil, raw end
  if type(data) == "table" or (accept_true and data == true) then return data end
  return nil, invalid(op, "has no Data block", not idempotent)
end

local function result(t)
  t.provider = "moka"
  return gateway.result(t)
end

-- An amount of an answer as text. cjson gives JSON numbers as doubles: a decimal of at most
-- 15 significant digits (with 2 decimals: below 10^13) comes back exactly with %.2f (DBL_DIG
-- is 15); a larger, non-finite or more precise one is not read (nil), so a comparison with
-- it fails closed.
local function amount_text(v)
  if type(v) == "number" then
    if v ~= v or v >= 1e13 or v <= -1e13 then return nil end
    local text = string.format("%.2f", v)
    if tonumber(text) ~= v then return nil end -- more than 2 decimals: not an amount
    return text
  end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function nonempty(v) return (type(v) == "string" and v ~= "") or (type(v) == "number" and v == math.floor(v)) end
-- an id as text: integral numbers without a decimal point (cjson gives 7.0 on Lua 5.4)
local function id_text(v)
  if type(v) == "number" and v == math.floor(v) then return string.format("%d", v) end
  return tostring(v)
end

-- The Data.IsSuccessful / Data.ResultCode level of a direct payment and of the after-sale
-- answers. Fails closed: ok_status only for IsSuccessful == true (the JSON boolean) with no
-- bank code and every field of `need` present; "failed" (the bank's code) for
-- IsSuccessful == false; anything else is not an answer paykit can read (invalid_response).
-- @return result | nil, err
local function inner_result(op, data, ok_status, extra, need, maybe_done)
  if type(data) ~= "table" then return nil, invalid(op, "has no Data block", maybe_done) end
  local r = extra or {}
  local ok, rc = data.IsSuccessful, denull(data.ResultCode)
  if ok == false then
    if rc ~= nil and type(rc) ~= "string" and type(rc) ~= "number" then
      return nil, invalid(op, "has a declined Data block with an unreadable ResultCode", maybe_done)
    end
    local code, message = codes.bank(rc)
    r.status = "failed"; r.code = code; r.message = message
    r.provider_code = rc; r.provider_message = denull(data.ResultMessage)
    return result(r)
  end
  if ok ~= true then
    return nil, invalid(op, "has no boolean Data.IsSuccessful", maybe_done)
  end
  if rc ~= nil and rc ~= "" then
    return nil, invalid(op, "says IsSuccessful but carries the bank code " .. tostring(rc):sub(1, 16), maybe_done)
  end
  for k, what in pairs(need or {}) do
    local v = data[k]
    if not (nonempty(v) and (what == "id" or type(v) == "string")) then
      return nil, invalid(op, "lacks Data." .. k, maybe_done)
    end
  end
  r.status = ok_status
  r.provider_reference = r.provider_reference or denull(data.VirtualPosOrderId)
  return result(r)
end

-- ------------------------------------------------------------------------------------
-- payments

--- Starts a 3D Secure payment.
-- DoDirectPaymentThreeD: -> result{status="redirect", redirect_url, method="GET", keep}
-- Not retried once it may have been sent.
-- @tparam table p the payment parameters (see the module description; `redirect_url` required)
-- @treturn table result "redirect": send the buyer to `redirect_url`; store `keep`
--   (`code_for_hash`, `reference`, `amount`, `currency`, `pre_auth`) for @{Moka:complete}
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:start_3d(p)
  local req, info = payment_request(self, p, true)
  if not req then return nil, info end
  local data, raw = self:call("start_3d", "/PaymentDealer/DoDirectPaymentThreeD", req, false)
  if data == nil and errors.is(raw) then return nil, raw end
  local link, cfh
  if type(data) == "table" then link, cfh = denull(data.Url), denull(data.CodeForHash)
  else link = data end
  if type(link) ~= "string" or link == "" or type(cfh) ~= "string" or cfh == "" then
    return nil, errors.provider { code = "moka.invalid_response", op = "moka.start_3d",
      message = "Moka's 3D answer lacks Data.Url or Data.CodeForHash" }
  end
  return result {
    status = "redirect", redirect_url = link, method = "GET",
    reference = info.reference, amount = info.amount, currency = info.currency,
    keep = { code_for_hash = cfh, reference = info.reference or "", amount = info.amount, currency = info.currency,
             pre_auth = info.pre_auth or nil },
    raw = raw,
  }
end

--- A direct payment without 3D Secure.
-- DoDirectPayment (non-3D): -> result paid / authorized (pre_auth) / failed (bank decline)
-- Not retried once it may have been sent.
-- @tparam table p the payment parameters (see the module description)
-- @treturn table result "paid", "authorized" (pre_auth) or "failed" (bank code in `code`)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:pay(p)
  local req, info = payment_request(self, p, false)
  if not req then return nil, info end
  local data, raw = self:call("pay", "/PaymentDealer/DoDirectPayment", req, false)
  if data == nil and errors.is(raw) then return nil, raw end
  local r, err = inner_result("pay", data, info.pre_auth and "authorized" or "paid",
    { reference = info.reference, amount = info.amount, currency = info.currency, raw = raw },
    { VirtualPosOrderId = "string" }, true)
  if not r then
    self.log("error", "moka.pay: " .. err.message)
    return nil, err
  end
  self.log("info", "moka.pay " .. r.status .. (r.code and (" " .. r.code) or ""))
  return r
end

-- The posted 3D result as a table of fields: the raw form-encoded POST body (a string), a
-- request table `{body=, query=}` or the fields already decoded (what a web framework gives).
local function posted(params)
  if type(params) == "string" then params = { body = params } end
  if type(params) ~= "table" then return nil, V("params", "required", "the posted 3D result fields are required") end
  if type(params.body) == "string" or type(params.query) == "string" then
    local map, err = gateway.form { body = params.body, query = params.query }
    if not map then return nil, err end
    return map
  end
  return params
end

--- Checks the signed outcome of a 3D payment.
-- The 3D return (or notification) check. params: the posted form: the raw form-encoded body
-- (a string), `{body=, query=}`, or the decoded fields (a table).
-- -> result paid/failed | nil, signature error (forged or malformed)
-- The hashValue is compared in constant time with both outcomes' hashes. The hash covers
-- only the CodeForHash and the outcome: trxCode, OtherTrxCode and resultCode are unsigned.
-- So the order is the one of `keep` (never the posted OtherTrxCode): a posted OtherTrxCode
-- that differs from the kept reference is refused (`reference_mismatch`). Without keep the
-- result has no `reference`, only `posted_reference` (unsigned, for your lookup).
-- `provider_reference` is the posted trxCode (unsigned: `confirm` in @{Moka:complete} takes
-- it from Moka's own answer instead).
-- @tparam string|table params the posted fields (hashValue, resultCode, resultMessage, trxCode,
--   OtherTrxCode): the raw form-encoded POST body, `{body=, query=}` or the decoded fields
-- @tparam string code_for_hash the CodeForHash kept from @{Moka:start_3d}
-- @tparam[opt] table keep the kept table (its reference, amount and currency fill the result)
-- @treturn table result "paid" or "failed"
-- @return[2] nil
-- @return[2] a validation error (missing params or code_for_hash) or a signature error:
--   `unsigned`, `malformed`, `bad_signature` (`paykit.kit.signature`'s codes), and Moka's own
--   `reference_mismatch`
function Moka:verify_3d(params, code_for_hash, keep)
  local perr
  params, perr = posted(params)
  if not params then return nil, perr end
  if type(code_for_hash) ~= "string" or code_for_hash == "" then
    return nil, V("code_for_hash", "required", "the CodeForHash stored when the payment started is required")
  end
  local f = self.fields
  local hv = gateway.field(params, f.hash)
  if hv == nil or hv == "" then
    self.log("warn", "moka.verify_3d: no hashValue")
    return nil, signature.error("unsigned", "the 3D result carries no hashValue: not signed by Moka")
  end
  hv = tostring(hv)
  if #hv ~= 64 or not hv:match("^%x+$") then
    self.log("warn", "moka.verify_3d: malformed hashValue")
    return nil, signature.error("malformed", "the 3D result's hashValue is not 64 hex digits")
  end
  hv = hv:lower()
  local ok_t = core().consteq(hv, _M.hash_3d(code_for_hash, true))
  local ok_f = core().consteq(hv, _M.hash_3d(code_for_hash, false))
  if not (ok_t or ok_f) then
    self.log("warn", "moka.verify_3d: hashValue matches neither outcome")
    return nil, signature.error("bad_signature",
      "the 3D result's hashValue matches neither outcome for this CodeForHash: forged, tampered or for another payment")
  end
  local trx = gateway.field(params, f.trx_code)
  local other = gateway.field(params, f.other_trx_code)
  if type(trx) ~= "string" or trx == "" then trx = nil end
  if type(other) ~= "string" or other == "" then other = nil end
  local r = { provider_reference = trx, posted_reference = other }
  if type(keep) == "table" then
    local kept = keep.reference or ""
    if other ~= nil and other ~= kept then
      self.log("warn", "moka.verify_3d: OtherTrxCode differs from the kept reference")
      return nil, errors.signature("reference_mismatch",
        "the 3D result names another OtherTrxCode than the payment it is checked for (the hash does not cover it): refused")
    end
    r.reference = kept ~= "" and kept or nil
    r.amount, r.currency = keep.amount, keep.currency
  end
  if ok_t and type(keep) == "table" and keep.pre_auth then
    r.status = "authorized"; r.code = "moka.authorized"; r.message = "Payment authorised (capture it later)"
  elseif ok_t then
    r.status = "paid"; r.code = "moka.paid"; r.message = "Payment approved"
  else
    local rc = gateway.field(params, f.result_code)
    if type(rc) ~= "string" then rc = nil end
    local code, message = codes.bank(rc)
    r.status = "failed"; r.code = code; r.message = message
    r.provider_code = rc; r.provider_message = gateway.field(params, f.result_message)
  end
  r.raw = params
  self.log("info", "moka.verify_3d " .. r.status)
  return result(r)
end

local function capture_like(self, p, op, path, extra, idempotent, status)
  if type(p) ~= "table" then return nil, V("params", "required", op .. " needs a table") end
  local ok, err = one_reference(p)
  if not ok then return nil, err end
  local o = put_reference(obj(), p)
  local amount
  if extra.amount then
    local currency
    currency, err = currency_of(self, p.currency)
    if not currency then return nil, err end
    if p.amount ~= nil or p.amount_minor ~= nil or extra.amount == "required" then
      local m
      amount, m = amount_of(p, "amount", currency, "amount", extra.amount == "optional")
      if not amount then return nil, m end
      put(o, "Amount", dec(amount))
    end
  end
  if extra.ip then
    -- DoCapture and DoVoid carry a ClientIP: the caller's (or the instance's default), never
    -- a made-up one
    local ip
    ip, err = client_ip(self, p)
    if not ip then return nil, err end
    put(o, "ClientIP", ip)
  end
  if extra.void_reason then
    local reason = p.reason
    if reason == nil then reason = 2 end
    if type(reason) ~= "number" or not self.void_reasons[reason] then
      local list = {}
      for v in pairs(self.void_reasons) do list[#list + 1] = tostring(v) end
      table.sort(list)
      return nil, V("reason", "invalid", "reason (VoidRefundReason) must be one of " .. table.concat(list, ", ") ..
        " (the values Moka publishes; more with the void_reasons option)")
    end
    put(o, "VoidRefundReason", reason)
  end
  local data, raw = self:call(op, path, o, idempotent)
  if data == nil and errors.is(raw) then return nil, raw end
  local r
  r, err = inner_result(op, data, status, { reference = p.reference, provider_reference = p.order_id,
    amount = amount, raw = raw }, extra.need, not idempotent)
  if not r then
    self.log("error", "moka." .. op .. ": " .. err.message)
    return nil, err
  end
  if r.status ~= "failed" and data.RefundRequestId ~= nil then r.refund_id = id_text(data.RefundRequestId) end
  return r
end

--- Captures a pre-authorised payment (DoCapture).
-- Amount absent = the whole pre-authorised amount. It turns a hold into a charge, so it is
-- not idempotent: never retried once it may have been sent (a second DoCapture would answer
-- PaymentIsNotPreAuth for a capture that succeeded).
-- @tparam table p `order_id` or `reference`; `amount`, `currency` (optional); `client_ip` (required:
--   the caller's or the instance's default, never made up)
-- @treturn table result "paid"
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:capture(p)
  return capture_like(self, p, "capture", "/PaymentDealer/DoCapture", { amount = "optional", ip = true }, false, "paid")
end

--- Voids (cancels) a payment (DoVoid).
-- Retried when it may have been sent (a void moves no money to anyone twice; a repeat that
-- finds it done answers `moka.payment_already_cancelled`).
-- @tparam table p `order_id` or `reference`; `client_ip` (required: the caller's or the
--   instance's default, never made up); `reason` (VoidRefundReason: default 2, the only
--   value Moka publishes; others only when listed in the instance's `void_reasons`)
-- @treturn table result "voided"
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:void(p)
  return capture_like(self, p, "void", "/PaymentDealer/DoVoid", { ip = true, void_reason = true }, true, "voided")
end

--- Asks for a refund (DoCreateRefundRequest).
-- Amount absent or 0 refunds the whole remaining amount. Not idempotent: never retried once sent.
-- @tparam table p `order_id` or `reference`; `amount`, `currency` (optional)
-- @treturn table result "pending", with `refund_id` when Moka gives one
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:refund(p)
  return capture_like(self, p, "refund", "/PaymentDealer/DoCreateRefundRequest", { amount = "optional", need = { RefundRequestId = "id" } }, false, "pending")
end

--- Releases a pool payment to the merchant (DoApprovePoolPayment).
-- @tparam table p `order_id` or `reference`
-- @treturn table result "paid"
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:approve_pool(p)
  return capture_like(self, p, "approve_pool", "/PaymentDealer/DoApprovePoolPayment", {}, true, "paid")
end

--- Takes a pool approval back (UndoApprovePoolPayment).
-- @tparam table p `order_id` or `reference`
-- @treturn table result "pending"
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:undo_pool(p)
  return capture_like(self, p, "undo_pool", "/PaymentDealer/UndoApprovePoolPayment", {}, true, "pending")
end

-- ------------------------------------------------------------------------------------
-- queries

--- A payment and its transactions, as Moka reports them.
-- GetDealerPaymentTrxDetailList{payment_id= | reference=} -> Data (PaymentDetail, PaymentTrxDetailList)
-- @tparam table|string p exactly one of `payment_id` (DealerPaymentId) and `reference`
--   (OtherTrxCode); a string is a reference
-- @treturn table Moka's Data block (empty table when null)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:payment_details(p)
  if type(p) == "string" then p = { reference = p } end
  if type(p) ~= "table" then return nil, V("params", "required", "payment_details needs {payment_id=} or {reference=}") end
  local which, err = one_of(p, "payment_id", "reference",
    "give exactly one of payment_id (DealerPaymentId) and reference (OtherTrxCode)")
  if not which then return nil, err end
  local ok
  if which == "payment_id" then ok, err = check_id(p.payment_id, "payment_id")
  else ok, err = check_len(p, "reference", 64) end
  if not ok then return nil, err end
  local o = obj()
  if which == "payment_id" then put(o, "PaymentId", p.payment_id) else put(o, "OtherTrxCode", p.reference) end
  local data
  data, err = data_call(self, "payment_details", "/PaymentDealer/GetDealerPaymentTrxDetailList", o, true)
  if not data then return nil, err end
  -- the answer must be about the payment asked for: Moka's own PaymentDetail names it
  local d = denull(data.PaymentDetail)
  if type(d) ~= "table" then return nil, invalid("payment_details", "lacks Data.PaymentDetail") end
  local got = which == "payment_id" and denull(d.DealerPaymentId) or denull(d.OtherTrxCode)
  local asked = which == "payment_id" and p.payment_id or p.reference
  if not nonempty(got) or id_text(got) ~= id_text(asked) then
    self.log("error", "moka.payment_details: the answer is about another payment")
    return nil, errors.provider { code = "moka.answer_mismatch", op = "moka.payment_details",
      message = "Moka's payment detail answer names another payment (" .. (which == "payment_id" and
        "DealerPaymentId" or "OtherTrxCode") .. ") than the one asked for, or none: refused" }
  end
  local list = denull(data.PaymentTrxDetailList)
  if list ~= nil and type(list) ~= "table" then
    return nil, invalid("payment_details", "has a PaymentTrxDetailList that is not a list")
  end
  return data
end

local PAYMENT_STATUS = { [0] = "pending", [1] = "authorized", [2] = "paid", [3] = "voided", [4] = "refunded" }
_M.PAYMENT_STATUS = PAYMENT_STATUS

--- The status of a payment (uniform flow).
-- uniform status(ref): ref is the merchant reference (OtherTrxCode) or {payment_id=}/{reference=}
-- @tparam string|table ref the reference, or `{payment_id=}` / `{reference=}`
-- @treturn table result "pending", "authorized", "paid", "voided", "refunded" or "failed"
--   (a declined last transaction), with `payment_id`
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:status(ref)
  local q = type(ref) == "table" and ref or { reference = ref }
  if type(q.reference) == "number" or type(q.reference) == "boolean" then
    return nil, V("reference", "invalid", "reference must be a string")
  end
  local data, err = self:payment_details(q)
  if not data then return nil, err end
  local d = data.PaymentDetail
  local ps = d.PaymentStatus
  local st = type(ps) == "number" and PAYMENT_STATUS[ps]
  if not st then
    return nil, invalid("status", "has no known PaymentStatus (0..4)")
  end
  local trx = denull(data.PaymentTrxDetailList)
  local last = type(trx) == "table" and trx[#trx] or nil
  local r = { status = st, reference = denull(d.OtherTrxCode) or q.reference,
    amount = amount_text(denull(d.Amount)), currency = denull(d.CurrencyCode), raw = data,
    payment_id = d.DealerPaymentId ~= nil and d.DealerPaymentId ~= null and id_text(d.DealerPaymentId) or nil }
  if type(last) == "table" then
    r.provider_reference = denull(last.VirtualPosOrderId) or denull(d.VirtualPosOrderId)
    if st == "pending" and tonumber(last.TrxStatus) == 2 then
      local code, message = codes.bank(denull(last.ResultCode))
      r.status = "failed"; r.code = code; r.message = message; r.provider_code = denull(last.ResultCode)
    end
  end
  return result(r)
end

local function check_bin(bin)
  if type(bin) ~= "string" or not bin:match("^%d%d%d%d%d%d%d?%d?$") then
    return nil, V("bin", "invalid", "bin must be the first 6 to 8 digits of a card, as a string")
  end
  return true
end

--- Bank and card information for a BIN (GetBankCardInformation).
-- @tparam string|table bin the first 6 to 8 digits of a card, or `{bin=}`
-- @treturn table Moka's Data block
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:bin_info(bin)
  if type(bin) == "table" then bin = bin.bin end
  local ok, err = check_bin(bin)
  if not ok then return nil, err end
  return data_call(self, "bin_info", "/PaymentDealer/GetBankCardInformation", put(obj(), "BinNumber", bin), true)
end

--- The installment table for a card and amount.
-- DoCalcPaymentTable{bin=, amount=, currency=, three_d=true, include_commission=false}
-- @tparam table p `bin` (6 to 8 digits), `amount`, `currency`, `three_d` (default true),
--   `include_commission` (default false)
-- @treturn table Moka's Data block
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:installments(p)
  if type(p) ~= "table" then return nil, V("params", "required", "installments needs a table") end
  local ok, err = check_bin(p.bin)
  if not ok then return nil, err end
  local currency
  currency, err = currency_of(self, p.currency)
  if not currency then return nil, err end
  local amount, m = amount_of(p, "amount", currency, "amount")
  if not amount then return nil, m end
  if p.three_d ~= nil and type(p.three_d) ~= "boolean" then
    return nil, V("three_d", "invalid", "three_d must be true or false")
  end
  local commission
  commission, err = flag_of(p, "include_commission")
  if not commission then return nil, err end
  local o = obj()
  put(o, "BinNumber", p.bin); put(o, "Currency", currency); put(o, "OrderAmount", dec(amount))
  put(o, "IsThreeD", p.three_d == false and 0 or 1)
  put(o, "IsIncludedCommissionAmount", commission)
  return data_call(self, "installments", "/PaymentDealer/DoCalcPaymentTable", o, true)
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

--- Creates a stored-card customer, optionally with a card (AddCustomerWithCard).
-- Not retried once it may have been sent.
-- @tparam table p `customer_code` (required), `customer_password`, `first_name`, `last_name`,
--   `gender`, `birth_date`, `gsm`, `email`, `address`; `card` `{number=, exp_month=,
--   exp_year=, holder=}` (never a CVC) and `card_name`
-- @treturn table Moka's Data block (DealerCustomer, CardList)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:add_customer(p)
  if type(p) ~= "table" then return nil, V("params", "required", "add_customer needs a table") end
  if is_blank(p.customer_code) then return nil, V("customer_code", "required", "customer_code is required") end
  local ok, cerr = check_person(p, "")
  if not ok then return nil, cerr end
  local o = obj()
  put(o, "CustomerCode", p.customer_code)
  put(o, "Password", p.customer_password or "")
  put_person(o, p)
  if p.card ~= nil then
    local _, err = stored_card(self, p, o)
    if err then return nil, err end
  end
  return data_call(self, "add_customer", "/DealerCustomer/AddCustomerWithCard", o, false)
end

--- Stores a card for a customer (AddCard). Not retried once it may have been sent.
-- @tparam table p `dealer_customer_id` or `customer_code`; `card` `{number=, exp_month=,
--   exp_year=, holder=}` (never a CVC), `card_name`
-- @treturn table Moka's Data block (with the CardToken)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:add_card(p)
  if type(p) ~= "table" then return nil, V("params", "required", "add_card needs a table") end
  local o, err = customer_ref(p, obj())
  if not o then return nil, err end
  local _
  _, err = stored_card(self, p, o)
  if err then return nil, err end
  return data_call(self, "add_card", "/DealerCustomer/AddCard", o, false)
end

--- A customer's stored cards (GetCardList).
-- @tparam table p `dealer_customer_id` or `customer_code`
-- @treturn table Moka's Data block
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:list_cards(p)
  if type(p) ~= "table" then return nil, V("params", "required", "list_cards needs a table") end
  local o, err = customer_ref(p, obj())
  if not o then return nil, err end
  return data_call(self, "list_cards", "/DealerCustomer/GetCardList", o, true)
end

--- Removes a stored card (RemoveCard).
-- @tparam table|string p `{card_token=}` or the card token
-- @treturn table Moka's Data block
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:remove_card(p)
  if type(p) == "string" then p = { card_token = p } end
  if type(p) ~= "table" or type(p.card_token) ~= "string" or p.card_token == "" then
    return nil, V("card_token", "required", "card_token is required")
  end
  local ok, err = check_len(p, "card_token", 64)
  if not ok then return nil, err end
  return data_call(self, "remove_card", "/DealerCustomer/RemoveCard", put(obj(), "CardToken", p.card_token), true, true)
end

-- ------------------------------------------------------------------------------------
-- the uniform flow

--- Starts a payment (uniform flow).
-- purchase(p): 3D by default (p.three_d == false for a direct payment). A reference
-- (OtherTrxCode) is generated when the caller gives none.
-- @tparam table p the payment parameters (see the module description); `return_url` is
--   taken as `redirect_url`; `three_d = false` for @{Moka:pay}
-- @treturn table result "redirect" (3D, see @{Moka:start_3d}) or the result of @{Moka:pay}
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:purchase(p)
  if type(p) ~= "table" then return nil, V("params", "required", "purchase needs a table") end
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  if is_blank(q.reference) then q.reference = core().uuid4() end
  -- the uniform name of the buyer's way back (Moka's RedirectUrl)
  if q.redirect_url == nil then q.redirect_url = q.return_url end
  q.return_url = nil
  if q.three_d ~= nil and type(q.three_d) ~= "boolean" then
    return nil, V("three_d", "invalid", "three_d must be true (3D Secure, the default) or false (a direct payment)")
  end
  if q.three_d == false then return self:pay(q) end
  return self:start_3d(q)
end

-- Whether two decimal amounts (Moka's text, the kept text) are the same number of kurus.
local function same_amount(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then return false end
  local ma, mb = money.parse(a, "TRY"), money.parse(b, "TRY")
  return ma ~= nil and ma == mb
end

-- Moka's own answer about a result that the hash says is paid: status() of the kept
-- reference must be paid (or authorized), for the kept amount and currency, with the posted
-- trxCode (when there is one) as its VirtualPosOrderId. Returns r (perhaps now "pending",
-- code "moka.unconfirmed") | nil, err (the status call's error, or a trxCode mismatch).
local function confirm(self, r, keep)
  local function unconfirmed(why)
    self.log("warn", "moka.confirm: " .. why)
    r.status = "pending"; r.code = "moka.unconfirmed"
    r.message = "the return was signed as paid but " .. why
    return r
  end
  if is_blank(keep.reference) then
    return unconfirmed("it cannot be confirmed: the payment was started without a reference (OtherTrxCode)")
  end
  local st, err = self:status(keep.reference)
  if not st then return nil, err end
  -- a sale must be paid; a pre-authorisation authorized (or already captured: paid)
  if st.status ~= "paid" and not (st.status == "authorized" and keep.pre_auth) then
    return unconfirmed("Moka reports " .. st.status)
  end
  if keep.amount and not same_amount(st.amount, keep.amount) then
    return unconfirmed("Moka reports another amount than the one kept")
  end
  local function tl(c) return c == "TRY" and "TL" or c end
  if keep.currency and tl(st.currency) ~= tl(keep.currency) then
    return unconfirmed("Moka reports another currency than the one kept")
  end
  if r.provider_reference and st.provider_reference ~= r.provider_reference then
    self.log("warn", "moka.confirm: trxCode differs from Moka's VirtualPosOrderId")
    return nil, errors.signature("order_id_mismatch",
      "the 3D result's trxCode (unsigned) is not the VirtualPosOrderId Moka reports for this payment: refused")
  end
  r.status = st.status
  r.provider_reference = st.provider_reference
  r.payment_id = st.payment_id
  r.confirmed = true
  return r
end

--- Completes a 3D payment when the buyer comes back (uniform flow).
-- complete(params, keep[, opts]): the buyer's browser came back with the posted form.
-- The order is always the kept one (`keep.reference`): a posted OtherTrxCode that differs is
-- refused. opts.confirm = true (or the instance's `confirm` option) also asks Moka
-- (GetDealerPaymentTrxDetailList by the kept reference) before saying "paid": then an
-- attacker who learned the CodeForHash still cannot make an unpaid order paid.
-- @tparam string|table params the posted form: the raw POST body (a string, as MoCoPay and
--   Zippy take theirs), `{body=, query=}`, or the decoded fields
-- @tparam table keep the `keep` table of the purchase result
-- @tparam[opt] table opts `confirm`
-- @treturn table result "paid" ("authorized" for a pre_auth payment), "failed", or "pending" (code "moka.unconfirmed") when the
--   confirmation disagrees (another status, amount or currency) or cannot be made
-- @return[2] nil
-- @return[2] a validation or signature error (see @{Moka:verify_3d}; `order_id_mismatch` when
--   the posted trxCode is not Moka's), or the status call's error
function Moka:complete(params, keep, opts)
  if type(keep) ~= "table" then return nil, V("keep", "required", "complete needs the keep table stored at purchase") end
  local r, err = self:verify_3d(params, keep.code_for_hash, keep)
  if not r then return nil, err end
  if opts ~= nil and type(opts) ~= "table" then return nil, V("opts", "invalid", "complete's opts must be a table") end
  local want = self.confirm
  if opts and opts.confirm ~= nil then want = opts.confirm end
  if (r.status == "paid" or r.status == "authorized") and want then return confirm(self, r, keep) end
  return r
end

--- Handles Moka's notification of a 3D result (uniform flow).
-- notification(req[, opts]): Moka's server-to-server POST of the 3D result.
-- The CodeForHash comes from opts.code_for_hash, opts.keep, or opts.lookup (else the
-- instance's lookup option) called as lookup(other_trx_code, trx_code): it returns the kept
-- table of the purchase (best: the result is then bound to keep.reference exactly as in
-- @{Moka:complete}) or just the CodeForHash string (the result's reference is then the
-- OtherTrxCode the lookup was given). Answers exactly "OK". Repeats of the same signed result
-- are flagged `duplicate`, whatever their unsigned fields say (the key is the hashValue,
-- which is unique per payment and outcome). opts.confirm = true (or the instance's
-- `confirm`) asks Moka before saying "paid", as @{Moka:complete} does; an unconfirmed
-- result ("pending") is answered 503 "PENDING" (so Moka sends it again) and not remembered.
-- @tparam table req `{method=, query=, body=, headers=}` (raw form-encoded query and body)
-- @tparam[opt] table opts `code_for_hash`, `keep`, `lookup`, `confirm`
-- @treturn table result "paid", "failed" or "pending" (unconfirmed), `duplicate` true when seen before
-- @treturn table reply `{status=200, body="OK", content_type="text/plain"}`
-- @return[2] nil
-- @return[2] a validation error (bad form, unknown payment), a signature error, or the
--   confirmation's error
-- @return[2] table reply to send (400 "INVALID" or 500 "UNKNOWN")
function Moka:notification(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    return nil, V("opts", "invalid", "notification's opts must be a table"), gateway.reply(500, "UNKNOWN")
  end
  opts = opts or {}
  local params, err = gateway.form(req)
  if not params then return nil, err, gateway.reply(400, "INVALID") end
  local other = gateway.field(params, self.fields.other_trx_code)
  local trx = gateway.field(params, self.fields.trx_code)
  local keep = type(opts.keep) == "table" and opts.keep or nil
  local cfh = opts.code_for_hash
  if cfh == nil and keep then cfh = keep.code_for_hash end
  local lookup = opts.lookup or self.lookup
  if cfh == nil and lookup then
    local ok, v = pcall(lookup, other, trx)
    if not ok then self.log("error", "moka.notification lookup failed: " .. tostring(v))
    elseif type(v) == "table" then keep = v; cfh = v.code_for_hash
    else cfh = v end
  end
  if type(cfh) ~= "string" or cfh == "" then
    self.log("warn", "moka.notification: no CodeForHash for this payment")
    return nil, V("code_for_hash", "unknown_payment",
      "no CodeForHash is known for this notification's payment (give code_for_hash, keep or lookup)"),
      gateway.reply(500, "UNKNOWN")
  end
  local r
  r, err = self:verify_3d(params, cfh, keep)
  if not r then return nil, err, gateway.reply(400, "INVALID") end
  if not keep then
    -- the CodeForHash was found (or given) for this OtherTrxCode, and the hash matched it
    r.reference = r.posted_reference
    keep = { reference = r.posted_reference }
  end
  local want = self.confirm
  if opts.confirm ~= nil then want = opts.confirm end
  if (r.status == "paid" or r.status == "authorized") and want then
    r, err = confirm(self, r, keep)
    if not r then return nil, err, gateway.reply(500, "UNKNOWN") end
    if r.status == "pending" then
      -- not acknowledged and not remembered: Moka sends it again, and a later delivery that
      -- Moka confirms is not mistaken for a duplicate
      r.duplicate = false
      self.log("warn", "moka.notification unconfirmed: not acknowledged")
      return r, gateway.reply(503, "PENDING")
    end
  end
  local key = "moka|" .. tostring(gateway.field(params, self.fields.hash)):lower()
  r.duplicate = self.seen:add(key)
  self.log("info", "moka.notification " .. r.status .. (r.duplicate and " (duplicate)" or ""))
  return r, gateway.reply(200, "OK")
end

return _M
