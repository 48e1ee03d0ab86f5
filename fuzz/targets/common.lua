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

-- The ways a reader is fed the bytes s, for the split-point checks of the HTTP targets: calls
-- each(chunks, what) for s in two chunks at every split point of a short input (128 bytes or
-- fewer) or at 96 of a long one (64 evenly spread, and the points either side of each CR and
-- LF of the first 2 KB, where a reader changes state), then for s one byte at a time when it
-- is 512 bytes or fewer. s whole is the caller's own baseline and is not fed here.
function M.feeds(s, each)
  local n = #s
  local cuts = {}
  if n <= 128 then
    for cut = 1, n - 1 do cuts[#cuts + 1] = cut end
  else
    for i = 1, 64 do cuts[#cuts + 1] = math.floor(i * n / 65) end
    local pos = 1
    while #cuts < 96 do
      local a = s:find("[\r\n]", pos)
      if not a or a > 2048 then break end
      cuts[#cuts + 1] = a - 1; cuts[#cuts + 1] = a
      pos = a + 1
    end
  end
  for _, cut in ipairs(cuts) do
    if cut >= 1 and cut < n then
      each({ s:sub(1, cut), s:sub(cut + 1) }, string.format("split at %d of %d", cut, n))
    end
  end
  if n <= 512 then
    local bytes = {}
    for i = 1, n do bytes[i] = s:sub(i, i) end
    each(bytes, "byte at a time")
  end
end

return M
