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
  local whole = outcome(core, { s }, opts)
  C.feeds(s, function(chunks, what)
    local got = outcome(core, chunks, opts)
    check(got == whole, "%s: %q ~= %q", what, got:sub(1, 200), whole:sub(1, 200))
  end)
end
