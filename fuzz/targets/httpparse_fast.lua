-- httpparse_fast: the fast response reader of httpparse.c (fast_head) against the general
-- one (libhttp-parser, core.http_response_parser{fast = false}).
--   input: byte 1 chooses HEAD (bit 1) and a small max_body (bit 2: 16 bytes, else 1 MB);
--   the rest is the bytes the server sent.
-- Both readers must say the same after every feed (done, need more, or the error code and
-- message), and then give the same status, headers, body and keep-alive: fed at once, in
-- two chunks at every split point (a sample of 96 for inputs above 128 bytes: evenly spread,
-- and next to each CR and LF of the first 2 KB), and one byte at a time (up to 512 bytes).
-- The general reader must never report that the fast one read. The same bytes read twice by
-- one parser (reset between) must read the same both times (the head the fast reader keeps).
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check
local CODES = { protocol = true, too_large = true, other = true }

local function outcome(core, chunks, opts, p)
  local keep = p ~= nil
  p = p or core.http_response_parser(opts)
  local said = {}
  local ok, err, code
  for _, c in ipairs(chunks) do
    ok, err, code = p:feed(c)
    if ok == nil then
      check(CODES[code] and type(err) == "string", "a failure is nil, message, known code")
      said[#said + 1] = "error|" .. code .. "|" .. err
    else
      said[#said + 1] = tostring(ok)
    end
  end
  if ok == false then
    ok, err, code = p:finish()
    said[#said + 1] = ok == nil and ("finish error|" .. tostring(code) .. "|" .. tostring(err)) or ("finish " .. tostring(ok))
  end
  if ok == true then
    local r = p:result()
    check(#r.body <= opts.max_body, "body above max_body")
    if opts.head then check(r.body == "", "a HEAD response with a body") end
    local names = {}
    for k, v in pairs(r.headers) do
      check(type(k) == "string" and k == k:lower() and type(v) == "string", "headers are lower-case strings")
      names[#names + 1] = k .. ": " .. v
    end
    table.sort(names)
    said[#said + 1] = table.concat({ "done", r.status, tostring(r.keepalive), table.concat(names, "\n"), r.body }, "|")
  end
  local fast = p:fast()
  if not keep then p:close() end
  return table.concat(said, "\n"), fast
end

local function same(core, chunks, opts, what)
  local f = outcome(core, chunks, { head = opts.head, max_body = opts.max_body })
  local g, used = outcome(core, chunks, { head = opts.head, max_body = opts.max_body, fast = false })
  check(not used, "fast = false used the fast reader")
  check(f == g, "%s: fast %q ~= general %q", what, f:sub(1, 300), g:sub(1, 300))
end

-- The same bytes twice on one parser (reset between, as on a kept connection): the second
-- time the fast reader may take the head it kept from the first.
local function same_again(core, chunks, opts, what)
  local g = outcome(core, chunks, { head = opts.head, max_body = opts.max_body, fast = false })
  local p = core.http_response_parser { head = opts.head, max_body = opts.max_body }
  local first = outcome(core, chunks, opts, p)
  p:reset { head = opts.head }
  local again = outcome(core, chunks, opts, p)
  p:close()
  check(first == g and again == g, "%s again: fast %q / %q ~= general %q", what, first:sub(1, 200), again:sub(1, 200),
    g:sub(1, 300))
end

return function(core, data)
  if #data < 1 then return end
  local b = data:byte(1)
  local opts = { head = b % 2 == 1, max_body = math.floor(b / 2) % 2 == 1 and 16 or 1048576 }
  local s = data:sub(2)
  same(core, { s }, opts, "whole")
  same_again(core, { s }, opts, "whole")
  local h = s:find("\r\n\r\n", 1, true)
  if h and h + 4 <= #s then same_again(core, { s:sub(1, h + 3), s:sub(h + 4) }, opts, "head, then body") end
  C.feeds(s, function(chunks, what) same(core, chunks, opts, what) end)
end
