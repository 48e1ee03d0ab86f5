-- Time to scrub 1 MB with paykit.redact.text, per input shape (CPU seconds, os.clock).
--   lua5.4 bench/redact.lua [size_bytes] [path_to_lua_dir] [shape]
-- The second argument points at another tree's lua/ directory to compare an older redact.lua
-- (the one before the linear rewrite needed 7 s for a 20 KB word run: hours for 1 MB); the
-- third runs only the shapes whose name contains it.
local size = tonumber(arg[1]) or 1024 * 1024
local dir = arg[2] or "./lua"
package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
local redact = require "paykit.redact"

local function fill(unit) return string.rep(unit, math.max(1, math.floor(size / #unit))) end
local shapes = {
  { "log mix", fill('paykit moka.pay response 200 {"Data":{"CodeForHash":"A1B2"},"IsSuccessful":true} ' ..
                     'cvc=123&x=1 4111111111111111 ') },
  { "JSON body", fill('{"CardNumber":"5555666677778884","CvcNumber":"123","Amount":"27.50","Note":"hello"},') },
  { "word run", fill("a") },
  { "digit run", fill("7") },
  { "grouped digits", fill("1234-") },
  { "k=v pairs", fill("abc=") },
}
print(string.format("redact.text on %d bytes (%s)", size, _VERSION .. (jit and (" " .. jit.version) or "")))
for _, c in ipairs(shapes) do
  if arg[3] and not c[1]:find(arg[3], 1, true) then goto continue end
  local t0 = os.clock()
  local r = redact.text(c[2])
  print(string.format("  %-16s %8.3f s  (%d bytes out)", c[1], os.clock() - t0, #r))
  ::continue::
end
