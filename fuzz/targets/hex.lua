-- crypto hex: hex_encode / hex_decode.
--   decode(encode(x)) == x, encode is 2n lower-case hex digits; a decodable x encodes back to
--   lower(x); a failure is invalid_hex with a message that does not echo the input.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check, failure = C.check, C.failure

return function(core, x)
  local enc = core.hex_encode(x)
  check(#enc == 2 * #x and not enc:find("[^0-9a-f]"), "hex_encode gave something else than 2n lower hex")
  check(enc == C.hex(x), "hex_encode differs from the reference")
  check(core.hex_decode(enc) == x, "decode(encode(x)) ~= x")
  local d, msg, code = core.hex_decode(x)
  if d then
    check(#d * 2 == #x, "hex_decode length")
    check(core.hex_encode(d) == x:lower(), "encode(decode(x)) ~= lower(x)")
  else
    failure(x, d, msg, code, { invalid_hex = true })
    check(#x % 2 == 1 or x:find("[^0-9a-fA-F]"), "valid hex refused")
  end
end
