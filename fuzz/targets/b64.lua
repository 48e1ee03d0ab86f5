-- crypto base64: b64_encode / b64_decode, standard and URL-safe (byte 1 chooses).
--   decode(encode(x)) == x; encode has the alphabet's characters and length (standard padded
--   to a multiple of 4, URL-safe unpadded); a decodable x encodes back to itself (URL-safe:
--   without its padding), since only canonical input is accepted.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check, failure = C.check, C.failure

return function(core, data)
  if #data < 1 then return end
  local url = data:byte(1) % 2 == 1
  local x = data:sub(2)
  local enc = core.b64_encode(x, url)
  if url then
    check(not enc:find("[^%w%-_]"), "URL-safe encoding outside its alphabet")
    check(#enc == math.ceil(#x * 4 / 3), "URL-safe length")
  else
    check(not enc:find("[^%w%+/=]") and not enc:find("=[^=]"), "standard encoding outside its alphabet")
    check(#enc == 4 * math.ceil(#x / 3), "standard length")
  end
  check(core.b64_decode(enc, url) == x, "decode(encode(x)) ~= x")
  local d, msg, code = core.b64_decode(x, url)
  if d then
    local want = url and x:gsub("=+$", "") or x
    check(core.b64_encode(d, url) == want, "encode(decode(x)) ~= x: a non-canonical input was accepted")
  else
    failure(x, d, msg, code, { invalid_base64 = true })
  end
end
