-- A seeded generator for specs that make many inputs: Park-Miller (x * 16807 mod 2^31 - 1),
-- exact in doubles, so Lua 5.4 and LuaJIT draw the same sequence from the same seed and a
-- failing case is found again from its seed.
--   local rnd = require("spec.support.prng")(20261203)
--   rnd(n) -- a whole number from 1 to n
return function(seed)
  local x = seed % 2147483647
  if x == 0 then x = 1 end
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end
