--- ISO code sets and address validators for MoCoPay's initPayment parameters
-- (country, lang, clientIp, callbackUrl, notifyUrl, imageUrl).
--
-- Module fields: `COUNTRIES` (ISO 3166-1 alpha-2 set), `LANGUAGES` (ISO 639-1 set).
-- `paykit.providers.mocopay` offers the same fields and functions.
-- @module paykit.providers.mocopay_codes
local url = require "paykit.url"

local M = {}

local find, sub = string.find, string.sub

-- The set of the words of text that match pattern.
local function set_of(text, pattern)
  local set = {}
  for w in text:gmatch(pattern) do set[w] = true end
  return set
end

-- ISO 3166-1 alpha-2: the 249 officially assigned codes.
M.COUNTRIES = set_of([[
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW]], "%u%u")

-- ISO 639-1: the 184 two-letter language codes (bh included, though withdrawn).
M.LANGUAGES = set_of([[
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da
de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz
ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln
lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi
pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti
tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu]], "%l%l")

--- Whether s is an IPv4 address.
-- Dotted-quad IPv4: four decimal numbers 0..255, no leading zeros (as inet_pton).
-- @param s the value
-- @treturn boolean
function M.is_ipv4(s)
  if type(s) ~= "string" then return false end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, p in ipairs { a, b, c, d } do
    if #p > 3 or (#p > 1 and sub(p, 1, 1) == "0") or tonumber(p) > 255 then return false end
  end
  return true
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
      if not M.is_ipv4(f) then return nil end
      n = n + 2
    elseif f:match("^%x%x?%x?%x?$") then
      n = n + 1
    else
      return nil -- empty field (a stray ":") or more than 4 hex digits
    end
  end
  return n
end

--- Whether s is an IPv6 address.
-- RFC 4291 text form: eight groups of 1-4 hex digits, "::" once for one or more zero groups,
-- an IPv4 address in place of the last two groups. No zone ids, no brackets.
-- @param s the value
-- @treturn boolean
function M.is_ipv6(s)
  if type(s) ~= "string" or #s < 2 or #s > 45 or find(s, "[^%x:%.]") then return false end
  local dbl = find(s, "::", 1, true)
  if not dbl then return v6_groups(s, true) == 8 end
  if find(s, "::", dbl + 1, true) then return false end
  local head, tail = v6_groups(sub(s, 1, dbl - 1), false), v6_groups(sub(s, dbl + 2), true)
  return head ~= nil and tail ~= nil and head + tail <= 7
end

--- Whether s is an IPv4 or IPv6 address (@{is_ipv4}, @{is_ipv6}).
-- @param s the value
-- @treturn boolean
function M.is_ip(s) return M.is_ipv4(s) or M.is_ipv6(s) end

--- Whether s is an absolute http(s) URL.
-- Absolute http(s) URL with a host, an optional port 1..65535, no spaces or control characters
-- (at most 2048 characters, no user information).
-- @param s the value
-- @treturn boolean
function M.is_http_url(s)
  if not url.is_http(s) or find(s, "[%c%s]") then return false end
  local host = url.parse(s).host
  return sub(host, 1, 1) ~= "[" or M.is_ipv6(sub(host, 2, -2))
end

return M
