--- paykit.kit.checks: the one set of input checks every provider uses, at one strictness.
--
-- Two forms of each check:
--
--  * `checks.is_X(v)` -> boolean (no error value), for places that only branch;
--  * `checks.X(v, field, ...)` -> nil when v is fine, or a `paykit.errors` validation error
--    naming `field` (code `required`, `invalid`, `too_long`, ...). Chain them with `or`:
--    `local err = checks.text(p.name, "name") or checks.uuid(p.product_id, "product_id")`.
--
-- What "valid" means, for every provider alike:
--
--  * IP addresses: IPv4 dotted quad without leading zeros (as inet_pton); IPv6 in RFC 4291 text
--    form ("::" once, an IPv4 tail allowed, no zone id, no brackets);
--  * URLs: absolute http(s) as `paykit.url.parse` accepts them, at most 2048 bytes, no spaces
--    or control characters, a bracketed host must be an IPv6 address;
--  * text: 1..max bytes (default `MAX_TEXT` 255) of well-formed UTF-8, no control character
--    (NUL, CR, LF, TAB, ESC, DEL), not only spaces;
--  * UUIDs: 8-4-4-4-12 hexadecimal digits;
--  * cards: 12..19 digits (spaces and dashes are dropped) passing Luhn, expiry month 1..12 and
--    year YYYY or YY not in the past, CVC 3 or 4 digits.
-- @module paykit.kit.checks
-- @usage
--   local checks = require "paykit.kit.checks"
--   checks.is_ip("2001:db8::1")                       --> true
--   local err = checks.text(p.carrier, "carrier") or checks.url(p.return_url, "return_url")
--   local card, err = checks.card(p.card, "card", {clock = os.time})
--   -- card = {number = "4111111111111111", exp_month = "09", exp_year = "2030", cvc = "123"}
local errors = require "paykit.errors"
local url = require "paykit.url"

local _M = {}

_M.MAX_TEXT = 255
_M.MAX_EMAIL = 254

local find, sub = string.find, string.sub

local function bad(field, code, message) return errors.validation(field, code, message) end

-- ------------------------------------------------------------------ IP addresses

-- One number of a dotted quad: 0..255, no leading zero.
local function octet(p)
  return #p <= 3 and not (#p > 1 and sub(p, 1, 1) == "0") and tonumber(p) <= 255
end

--- Whether s is a dotted-quad IPv4 address (four numbers 0..255, no leading zeros).
-- @param s the value
-- @treturn boolean
function _M.is_ipv4(s)
  if type(s) ~= "string" then return false end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  return octet(a) and octet(b) and octet(c) and octet(d)
end

-- Number of 16-bit groups in a colon-separated run ("" -> 0), nil when malformed. The last
-- field may be an embedded IPv4 address (two groups) when allow_v4.
local function v6_groups(run, allow_v4)
  if run == "" then return 0 end
  local fields = {}
  for f in (run .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
  local n = 0
  for i, f in ipairs(fields) do
    if allow_v4 and i == #fields and find(f, ".", 1, true) then
      if not _M.is_ipv4(f) then return nil end
      n = n + 2
    elseif f:match("^%x%x?%x?%x?$") then
      n = n + 1
    else
      return nil -- an empty field (a stray ":") or more than 4 hex digits
    end
  end
  return n
end

--- Whether s is an IPv6 address in RFC 4291 text form (no zone id, no brackets).
-- @param s the value
-- @treturn boolean
function _M.is_ipv6(s)
  if type(s) ~= "string" or #s < 2 or #s > 45 or find(s, "[^%x:%.]") then return false end
  local dbl = find(s, "::", 1, true)
  if not dbl then return v6_groups(s, true) == 8 end
  if find(s, "::", dbl + 1, true) then return false end
  local head, tail = v6_groups(sub(s, 1, dbl - 1), false), v6_groups(sub(s, dbl + 2), true)
  return head ~= nil and tail ~= nil and head + tail <= 7
end

-- The last addresses found good (a pure check of the string: a server's calls carry the same
-- few client addresses again and again), emptied when it holds GOOD_IPS_MAX of them.
local GOOD_IPS_MAX = 256
local good_ips, good_ips_n = {}, 0

--- Whether s is an IPv4 or IPv6 address.
-- @param s the value
-- @treturn boolean
function _M.is_ip(s)
  if good_ips[s] then return true end
  if not (_M.is_ipv4(s) or _M.is_ipv6(s)) then return false end
  if good_ips_n >= GOOD_IPS_MAX then good_ips, good_ips_n = {}, 0 end
  good_ips[s], good_ips_n = true, good_ips_n + 1
  return true
end

--- An IP address (IPv4 or IPv6, strict).
-- @param v the value
-- @tparam string field
-- @return nil or a validation error (`required`, `invalid`)
function _M.ip(v, field)
  if v == nil then return bad(field, "required", field .. " is required") end
  if not _M.is_ip(v) then
    return bad(field, "invalid", field .. " must be an IPv4 or IPv6 address (e.g. 203.0.113.7 or 2001:db8::1)")
  end
end

-- ------------------------------------------------------------------ URLs

-- The last URLs found good (a pure check of the string; a provider's calls carry the same
-- few return and callback URLs again and again): emptied when it holds GOOD_MAX of them.
local GOOD_MAX = 256
local good_urls, good_n = {}, 0

--- Whether s is an absolute http(s) URL (see the module description).
-- @param s the value
-- @treturn boolean
function _M.is_http_url(s)
  if good_urls[s] then return true end
  if type(s) ~= "string" or #s > 2048 or find(s, "[%c%s]") then return false end
  local parts = url.parse(s)
  if not parts then return false end
  local host = parts.host
  local ok = sub(host, 1, 1) ~= "[" or _M.is_ipv6(sub(host, 2, -2))
  if ok then
    if good_n >= GOOD_MAX then good_urls, good_n = {}, 0 end
    good_urls[s], good_n = true, good_n + 1
  end
  return ok
end

--- An absolute http(s) URL; `o.no_fragment` refuses a "#fragment" (`o.why` says why, in the message).
-- @param v the value
-- @tparam string field
-- @tparam[opt] table o `{no_fragment = true, why = "..."}`
-- @return nil or a validation error (`required`, `invalid_url`)
function _M.url(v, field, o)
  if v == nil then return bad(field, "required", field .. " is required") end
  if not _M.is_http_url(v) then
    return bad(field, "invalid_url", field .. " must be an absolute http(s) URL (at most 2048 bytes, no spaces or control characters)")
  end
  if o and o.no_fragment and find(v, "#", 1, true) then
    return bad(field, "invalid_url", field .. " must not carry a #fragment" .. (o.why and (": " .. o.why) or ""))
  end
end

-- ------------------------------------------------------------------ text

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
function _M.is_utf8(s)
  -- ASCII without NUL (most text) needs no walk
  if not find(s, "[\128-\255]") and not find(s, "\0", 1, true) then return true end
  local i, n = 1, #s
  while i <= n do
    local j
    for _, p in ipairs(UTF8) do
      local _, e = find(s, p, i)
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
  if find(v, "%c") then
    return bad(field, "control_characters", field .. " must not contain control characters (NUL, CR, LF, TAB, ESC, DEL...)")
  end
  if not _M.is_utf8(v) then return bad(field, "invalid_utf8", field .. " must be valid UTF-8") end
  if not find(v, "%S") then return bad(field, "blank", field .. " must not be only spaces") end
end

--- An identifier that travels in a URL path: text of 1..255 letters, digits and - _ . ~ : only.
-- @param v the value
-- @tparam string field
-- @return nil or a validation error
function _M.key(v, field)
  local e = _M.text(v, field); if e then return e end
  if not find(v, "^[%w%-_.~:]+$") then
    return bad(field, "invalid", field .. " may hold only letters, digits and - _ . ~ :")
  end
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- Whether s is a UUID string (8-4-4-4-12 hexadecimal digits).
-- @param s the value
-- @treturn boolean
function _M.is_uuid(s) return type(s) == "string" and find(s, UUID) ~= nil end

--- A UUID string.
-- @param v the value
-- @tparam string field
-- @return nil or a validation error (`required`, `invalid_uuid`)
function _M.uuid(v, field)
  if v == nil then return bad(field, "required", field .. " is required") end
  if not _M.is_uuid(v) then
    return bad(field, "invalid_uuid", field .. " must be a UUID string like 0f8fad5b-d9cb-469f-a165-70867728950e")
  end
end

--- An email address (at most 254 bytes, one "@", a dot in the domain).
-- @param v the value
-- @tparam string field
-- @return nil or a validation error
function _M.email(v, field)
  local e = _M.text(v, field, _M.MAX_EMAIL); if e then return e end
  if not find(v, "^[^@%s]+@[^@%s]+%.[^@%s]+$") then
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

--- One of a set of values.
-- @param v the value
-- @tparam string field
-- @tparam table set `{VALUE = true, ...}`
-- @return nil or a validation error (`required`, `invalid`) listing the values
function _M.one_of(v, field, set)
  if set[v] then return nil end
  local list = {}
  for k in pairs(set) do list[#list + 1] = tostring(k) end
  table.sort(list)
  return bad(field, v == nil and "required" or "invalid", field .. " must be one of " .. table.concat(list, ", "))
end

-- ------------------------------------------------------------------ cards

--- Whether a string of digits passes the Luhn check.
-- @tparam string digits
-- @treturn boolean
function _M.is_luhn(digits)
  if type(digits) ~= "string" or not find(digits, "^%d+$") then return false end
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum, alt = sum + d, not alt
  end
  return sum % 10 == 0
end

--- A card number: 12..19 digits (spaces and dashes dropped) passing Luhn.
-- The error never carries the number. Returns the digits, or nil, err.
-- @param v the value
-- @tparam string field e.g. "card.number"
-- @treturn string the digits
function _M.card_number(v, field)
  if type(v) == "number" then return nil, bad(field, "invalid", "the card number must be a string of digits") end
  if type(v) ~= "string" or v == "" then return nil, bad(field, "required", "the card number is required") end
  local number = v:gsub("[ %-]", "")
  if not find(number, "^%d+$") then return nil, bad(field, "not_digits", "the card number must contain only digits") end
  if #number < 12 or #number > 19 then
    return nil, bad(field, "invalid_length", "the card number must have 12 to 19 digits")
  end
  if not _M.is_luhn(number) then
    return nil, bad(field, "invalid_luhn", "the card number fails the Luhn check (mistyped?)")
  end
  return number
end

--- An expiry month and year, not in the past. Returns "MM", "YYYY", or nil, err.
-- @param month 1..12 (string or integer)
-- @param year YYYY or YY (string or integer)
-- @tparam string prefix the card's field, e.g. "card" (errors name card.exp_month / card.exp_year)
-- @tparam[opt=os.time] function clock unix seconds now
-- @treturn string month "MM"
-- @treturn string year "YYYY"
function _M.expiry(month, year, prefix, clock)
  local m = tonumber(month)
  if not m or m ~= math.floor(m) or m < 1 or m > 12 or not tostring(month):match("^%d%d?$") then
    return nil, bad(prefix .. ".exp_month", "invalid", "the expiry month must be 1 to 12")
  end
  local ys = tostring(year or "")
  if not (ys:match("^%d%d%d%d$") or ys:match("^%d%d$")) then
    return nil, bad(prefix .. ".exp_year", "invalid", "the expiry year must be YYYY (or YY)")
  end
  local y = tonumber(ys)
  if y < 100 then y = 2000 + y end
  local now = os.date("!*t", (clock or os.time)())
  if y < now.year or (y == now.year and m < now.month) then
    return nil, bad(prefix .. ".exp_year", "expired", "the card has expired")
  end
  return string.format("%02d", m), string.format("%04d", y)
end

--- A CVC: 3 or 4 digits, a string. The error never carries it.
-- @param v the value
-- @tparam string field e.g. "card.cvc"
-- @return nil or a validation error
function _M.cvc(v, field)
  if type(v) ~= "string" or not find(v, "^%d%d%d%d?$") then
    return bad(field, "invalid", "the CVC must be 3 or 4 digits")
  end
end

--- A whole card: `{number=, exp_month=, exp_year=, cvc=, holder=}`.
-- Returns the normalised card (digits, "MM", "YYYY", cvc, holder) or nil, err.
-- @param card the value
-- @tparam string field e.g. "card"
-- @tparam[opt] table o `clock` (function, unix seconds), `cvc_optional` (a stored card),
--   `holder_max` (characters, default 100)
-- @treturn table the card
function _M.card(card, field, o)
  o = o or {}
  if type(card) ~= "table" then return nil, bad(field, "required", field .. " is required") end
  local number, err = _M.card_number(card.number, field .. ".number")
  if not number then return nil, err end
  local m, y = _M.expiry(card.exp_month, card.exp_year, field, o.clock)
  if not m then return nil, y end
  local out = { number = number, exp_month = m, exp_year = y }
  if card.cvc ~= nil or not o.cvc_optional then
    err = _M.cvc(card.cvc, field .. ".cvc"); if err then return nil, err end
    out.cvc = card.cvc
  end
  if card.holder ~= nil then
    local max = o.holder_max or 100
    local ok_len = type(card.holder) == "string" and _M.is_utf8(card.holder)
    local len = 0
    if ok_len then for _ in card.holder:gmatch("[^\128-\191]") do len = len + 1 end end
    if not ok_len or len > max or find(card.holder, "%c") then
      return nil, bad(field .. ".holder", "invalid", "the card holder must be a string of at most " .. max .. " characters")
    end
    out.holder = card.holder
  end
  return out
end

return _M
