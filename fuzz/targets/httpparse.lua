-- httpparse: the HTTP/1.1 response parser of the cosocket transport.
--   input: byte 1 chooses HEAD and a small max_body; the rest is the bytes the server sent.
--   Split-point independence: the outcome (done with status, headers, body and keep-alive;
--   or the error code and message; after finish() when the bytes end early) is the same for
--   the bytes fed at once, in two chunks at every split point (a sample of 96 for inputs
--   above 128 bytes), and one byte at a time (up to 512 bytes). A result respects max_body and HEAD.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check
local CODES = { protocol = true, too_large = true, other = true }

local function outcome(core, chunks, opts)
  local p = core.http_response_parser(opts)
  local ok, err, code = false, nil, nil
  for _, c in ipairs(chunks) do ok, err, code = p:feed(c) end
  if ok == false then ok, err, code = p:finish() end
  local out
  if ok == true then
    local r = p:result()
    check(#r.body <= opts.max_body, "body above max_body")
    if opts.head then check(r.body == "", "a HEAD response with a body") end
    check(math.type(r.status) == "integer", "status is an integer")
    local names = {}
    for k, v in pairs(r.headers) do
      check(type(k) == "string" and k == k:lower() and type(v) == "string", "headers are lower-case strings")
      names[#names + 1] = k .. ": " .. v
    end
    table.sort(names)
    out = table.concat({ "done", r.status, tostring(r.keepalive), table.concat(names, "\n"), r.body }, "|")
  else
    check(ok == nil and CODES[code] and type(err) == "string", "a failure is nil, message, known code")
    out = "error|" .. code .. "|" .. err
  end
  p:close()
  return out
end

return function(core, data)
  if #data < 1 then return end
  local b = data:byte(1)
  local opts = { head = b % 2 == 1, max_body = (b & 2) ~= 0 and 16 or 1048576 }
  local s = data:sub(2)
  local n = #s
  local whole = outcome(core, { s }, opts)
  -- every split point of a short input; 96 of a long one (evenly spread, plus the points
  -- next to each CR and LF of the first 2 KB, where the parser changes state)
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
      local split = outcome(core, { s:sub(1, cut), s:sub(cut + 1) }, opts)
      check(split == whole, "split at %d of %d: %q ~= %q", cut, n, split:sub(1, 200), whole:sub(1, 200))
    end
  end
  if n <= 512 then
    local bytes = {}
    for i = 1, n do bytes[i] = s:sub(i, i) end
    local one = outcome(core, bytes, opts)
    check(one == whole, "byte at a time: %q ~= %q", one:sub(1, 200), whole:sub(1, 200))
  end
end
