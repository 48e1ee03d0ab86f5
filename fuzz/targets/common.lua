-- Helpers shared by the fuzz checks (loaded with dofile by each target).
local M = {}

-- Raises (a finding) unless cond; the message says which invariant broke.
function M.check(cond, what, ...)
  if not cond then error("invariant: " .. string.format(what, ...), 2) end
end

local function check_ascii(msg)
  M.check(not msg:find("[^\32-\126]"), "a message with a byte outside printable ASCII")
end

-- An error triple from a binding: nil, message, code, with a known code and a message that
-- never echoes the input (a caller may pass a secret by mistake).
function M.failure(input, r, msg, code, codes)
  M.check(r == nil, "a failure returns nil first")
  M.check(type(msg) == "string" and msg ~= "", "a failure has a message")
  M.check(codes[code], "unknown failure code %q", tostring(code))
  -- messages are printable ASCII of their own: one holding an input with a control or
  -- non-ASCII byte can only have copied it
  check_ascii(msg)
  if #input >= 8 and input:find("[^\32-\126]") then
    M.check(not msg:find(input, 1, true), "the message echoes the input")
  end
end

function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Deep equality: tables member for member (both ways), NaN the same as NaN.
function M.same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not M.same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

return M
