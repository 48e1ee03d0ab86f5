-- codec percent-coding: pct_encode / pct_decode.
--   decode(encode(x)) == x (with and without "+" as space); encode gives only unreserved
--   bytes and %XX; a decodable x round-trips through decode/encode/decode; a failure is
--   invalid_percent with a message that does not echo the input.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check, failure = C.check, C.failure

return function(core, x)
  local enc = core.pct_encode(x)
  check(not enc:find("[^%w%-%._~%%]"), "pct_encode gave a reserved byte")
  check(not enc:find("%%%X") and not enc:find("%%%x%X") and not enc:find("%%.?$"), "pct_encode gave a bad escape")
  check(not enc:find("%%%x?[a-f]"), "pct_encode escapes are upper-case")
  check(core.pct_decode(enc) == x, "decode(encode(x)) ~= x")
  check(core.pct_decode(enc, true) == x, "decode(encode(x), plus) ~= x")
  for _, plus in ipairs { false, true } do
    local d, msg, code = core.pct_decode(x, plus)
    if d then
      check(#d <= #x, "decoding made the text longer")
      check(core.pct_decode(core.pct_encode(d), plus) == d, "decode(encode(decode(x))) ~= decode(x)")
      if not x:find("%", 1, true) and not (plus and x:find("+", 1, true)) then
        check(d == x, "a text without escapes decoded to something else")
      end
    else
      failure(x, d, msg, code, { invalid_percent = true })
      check(x:find("%", 1, true), "a text without '%%' failed to decode")
    end
  end
end
