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
local url = require "paykit.url"

local _M = {}

_M.MAX_TEXT = 255
_M.MAX_EMAIL = 254
_M.MAX_NOTICE = 8192     -- a signed notice (check_notice, complete's query)
_M.MAX_CALLBACK = 16384  -- a callback body (signed_notice=...)

local function bad(field, code, message)
  return errors.validation(field, code, message)
end

-- Well-formed UTF-8 sequences (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
-- NUL is left out: the control-character check refuses it first.
local UTF8 = {
  "^[\1-\127]+",
  "^[\194-\223][\128-\191]",
  "^\224[\160-\191][\128-\191]",
  "^[\225-\236\238\239][\128-\191][\128-\191]",
  "^\237[\128-\159][\128-\191]",
  "^\240[\144-\191][\128-\191][\128-\191]",
  "^[\241-\243][\128-\191][\128-\191][\128-\191]",
  "^\244[\128-\143][\128-\191][\128-\191]",
}

--- Whether s is well-formed UTF-8 (without NUL).
-- @tparam string s
-- @treturn boolean
function _M.utf8(s)
  local i, n = 1, #s
  while i <= n do
    local j
    for _, p in ipairs(UTF8) do
      local _, e = s:find(p, i)
      if e then j = e; break end
    end
    if not j then return false end
    i = j + 1
  end
  return true
end

--- A printable text of 1..max bytes.
-- @param v the value
-- @tparam string field the field the error names
-- @tparam[opt=255] number max
-- @return nil, or a validation error (`required`, `invalid`, `too_long`, `control_characters`,
--   `invalid_utf8`, `blank`)
function _M.text(v, field, max)
  max = max or _M.MAX_TEXT
  if v == nil then return bad(field, "required", field .. " is required") end
  if type(v) ~= "string" then return bad(field, "invalid", field .. " must be a string") end
  if v == "" then return bad(field, "required", field .. " must not be empty") end
  if #v > max then
    return bad(field, "too_long", field .. " must be at most " .. max .. " bytes (" .. #v .. " given)")
  end
  if v:find("%c") then
    return bad(field, "control_characters", field .. " must not contain control characters (NUL, CR, LF, TAB, ESC, DEL...)")
  end
  if not _M.utf8(v) then return bad(field, "invalid_utf8", field .. " must be valid UTF-8") end
  if not v:find("%S") then return bad(field, "blank", field .. " must not be only spaces") end
end

--- A seller's uuid (it is a URL path segment): 1..255 of A-Z a-z 0-9 - _ . ~ :
-- @param v the value
-- @tparam string field
-- @return nil or a validation error
function _M.key(v, field)
  local e = _M.text(v, field); if e then return e end
  if not v:find("^[%w%-_.~:]+$") then
    return bad(field, "invalid", field .. " may hold only letters, digits and - _ . ~ :")
  end
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- A UUID string (8-4-4-4-12 hexadecimal digits).
-- @param v the value
-- @tparam string field
-- @return nil or a validation error (`required`, `invalid_uuid`)
function _M.uuid(v, field)
  if v == nil then return bad(field, "required", field .. " is required") end
  if type(v) ~= "string" or not v:find(UUID) then
    return bad(field, "invalid_uuid", field .. " must be a UUID string like 0f8fad5b-d9cb-469f-a165-70867728950e")
  end
end

--- An email address.
-- @param v the value
-- @tparam string field
-- @return nil or a validation error
function _M.email(v, field)
  local e = _M.text(v, field, _M.MAX_EMAIL); if e then return e end
  if not v:find("^[^@%s]+@[^@%s]+%.[^@%s]+$") then
    return bad(field, "invalid", field .. " must be an email address")
  end
end

local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- A calendar date YYYY-MM-DD.
-- @param v the value
-- @tparam string field
-- @return nil or a validation error
function _M.date(v, field)
  local y, m, d
  if type(v) == "string" then y, m, d = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$") end
  if y then
    y, m, d = tonumber(y), tonumber(m), tonumber(d)
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    local max = DAYS[m] and ((m == 2 and leap) and 29 or DAYS[m])
    if max and d >= 1 and d <= max then return nil end
  end
  return bad(field, "invalid", field .. " must be a date YYYY-MM-DD")
end

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

--- An absolute http(s) URL; `o.no_fragment` refuses a "#fragment".
-- @param v the value
-- @tparam string field
-- @tparam[opt] table o `{no_fragment = true}`
-- @return nil or a validation error (`required`, `invalid_url`)
function _M.url(v, field, o)
  if v == nil then return bad(field, "required", field .. " is required") end
  if not url.is_http(v) then
    return bad(field, "invalid_url", field .. " must be an absolute http(s) URL (at most 2048 bytes, no spaces or control characters)")
  end
  if o and o.no_fragment and v:find("#", 1, true) then
    return bad(field, "invalid_url", field .. " must not carry a #fragment: Zippy appends ?<notice> to it and the browser would keep the notice to itself")
  end
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
