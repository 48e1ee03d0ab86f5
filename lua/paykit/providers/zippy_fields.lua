--- The checks paykit runs on every value it would send to Zippy, before any network call.
-- Each check answers nil when the value is fine, or a validation error naming the field.
--
-- Limits (Zippy's documentation gives none; these are paykit's, and documented in README):
--
--  * text (`ext_transaction_id`/`reference`, `carrier`, names, `external_id`): 1 to
--   `MAX_TEXT` (255) bytes of UTF-8, no control character (NUL, CR, LF, TAB, ESC, DEL, ...),
--   not only spaces;
--  * a seller's uuid (it travels in URL paths): 1 to 255 of `A-Z a-z 0-9 - _ . ~ :`;
--  * a product's uuid and a transaction's `product_id`: a UUID string (8-4-4-4-12 hex digits);
--  * `region`: the buyer's MCC, three digits (a string, or an integer 0..999);
--  * `email`: at most 254 bytes, one "@" and a dot in the domain; `agreement`: a real date
--   YYYY-MM-DD;
--  * URLs: absolute http(s), at most 2048 bytes (`paykit.url`); the browser's return URLs
--   (success_url, error_url) without a "#fragment", since Zippy appends "?" and the notice to
--   them and a browser never sends what follows "#";
--  * amounts: exact decimals (`paykit.money`), and more than zero.
-- @module paykit.providers.zippy_fields
local errors = require "paykit.errors"
local money = require "paykit.money"
local checks = require "paykit.kit.checks"

local _M = {}

_M.MAX_TEXT = 255
_M.MAX_EMAIL = 254
_M.MAX_NOTICE = 8192     -- a signed notice (check_notice, complete's query)
_M.MAX_CALLBACK = 16384  -- a callback body (signed_notice=...)

local function bad(field, code, message)
  return errors.validation(field, code, message)
end

-- The generic checks (text, key, uuid, email, date, utf8) are paykit.kit.checks'.

--- The buyer's MCC: three digits. Returns the string to send, or nil, err.
-- @param v a string of three digits or an integer 0..999
-- @tparam string field
-- @treturn string
function _M.region(v, field)
  if v == nil then return nil, bad(field, "required", field .. " (the buyer's mobile country code) is required") end
  if type(v) == "number" and v == math.floor(v) and v >= 0 and v <= 999 then
    return string.format("%03d", v)
  end
  if type(v) == "string" and v:find("^%d%d%d$") then return v end
  return nil, bad(field, "invalid", field .. " must be a mobile country code of three digits, like 310")
end

local NO_FRAGMENT = { no_fragment = true,
  why = "Zippy appends ?<notice> to it and the browser would keep the notice to itself" }

--- An absolute http(s) URL; `o.no_fragment` refuses a "#fragment" (Zippy appends ?<notice>).
-- @param v the value
-- @tparam string field
-- @tparam[opt] table o `{no_fragment = true}`
-- @return nil or a validation error (`required`, `invalid_url`)
function _M.url(v, field, o)
  return checks.url(v, field, o and o.no_fragment and NO_FRAGMENT or nil)
end

--- A price as Zippy wants it ("0.99"): exact, with the currency's two decimals, above zero.
-- Returns the decimal string, or nil, err.
-- @param v a decimal string (or what `paykit.money.parse` takes)
-- @tparam string currency
-- @tparam string field
-- @treturn string
function _M.price(v, currency, field)
  if money.exponent(currency) ~= 2 then
    return nil, bad("currency", "unsupported_currency",
      "Zippy prices " .. tostring(currency) .. " with 2 decimals; paykit.money does not know it")
  end
  local minor, dec = money.parse(v, currency, field)
  if not minor then return nil, dec end
  if minor <= 0 then
    return nil, bad(field, "not_positive", field .. " must be more than zero")
  end
  if not dec:find("^[0-9]+%.[0-9][0-9]$") then
    return nil, bad(field, "invalid", field .. " must be a decimal like 0.99")
  end
  return dec
end

return _M
