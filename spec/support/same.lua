-- Deep equality for specs that compare two readings of the same input: tables member for
-- member (both ways), numbers by value and by kind (an integer is not the float of the same
-- value, on Lua 5.4), NaN the same as NaN.
local mtype = math.type

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then
    if a ~= a then return b ~= b end
    if mtype and type(a) == "number" then return a == b and mtype(a) == mtype(b) end
    return a == b
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

return same
