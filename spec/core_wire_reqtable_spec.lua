-- core.wire_client's request table, read two ways (csrc/reqopts.c paykit_req_fields): a table
-- without a metatable by lua_rawget with the field names kept as strings, any other by
-- lua_getfield. Differential: many generated request tables (every field absent, right or
-- wrong in type or value, other keys beside them, small and large tables) go to a real nginx on
-- 127.0.0.1 as they are (the rawget path), behind an __index (the getfield path, which also
-- sees what __index answers) and as a copy with an empty metatable (the getfield path on the
-- same entries); the outcome (the raise and its message, or the failure, or the answer with the
-- bytes the server received) must be the same all three ways. Then each field read on the fast
-- path, by name, so that a field it skipped shows; a HEAD's body, never written; and the header
-- text check (csrc/reqopts.c, a word at a time) at every place of values and names up to 40 bytes.
local core = require "paykit.core"
local nginx = require "spec.support.nginx"

local PORT = 18766
local BASE = "http://127.0.0.1:" .. PORT

local function outcome(c, req)
  local ok, res, msg, code, maybe_sent = pcall(c.request, c, req)
  if not ok then return "raise: " .. tostring(res) end
  if res == nil then return ("fail: %s %s %s"):format(tostring(code), tostring(msg), tostring(maybe_sent)) end
  local names = {}
  for k in pairs(res.headers) do if k ~= "date" then names[#names + 1] = k end end
  table.sort(names)
  local parts = { "ok: " .. res.status, res.body }
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. tostring(res.headers[k]) end
  return table.concat(parts, "\n")
end

local function pick(r, list) return list[r(#list)] end

-- One request table from the generator r (r(n): 1..n).
local function gen(r, i)
  local NIL = {}
  local function opt(list) local v = pick(r, list); if v == NIL then return nil end; return v end
  local t = {}
  if r(4) > 1 then t.url = BASE .. "/raw?i=" .. i
  else t.url = opt { NIL, 42, "ftp://127.0.0.1/", BASE .. "/r\0aw", "http://a b/", true, BASE .. "/raw" } end
  local counts = { NIL, NIL, NIL, NIL, 0, 30000, 60000, -1, 1.5, "10", 2 ^ 60, false }
  if r(2) == 1 then t.method = opt { NIL, "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "BAD METHOD", "", 5, {} } end
  if r(3) == 1 then t.timeout = opt(counts) end
  if r(3) == 1 then t.connect_timeout = opt(counts) end
  if r(3) == 1 then t.stall_timeout = opt(counts) end
  if r(3) == 1 then t.send_timeout = opt(counts) end
  if r(3) == 1 then t.read_timeout = opt(counts) end
  if r(4) == 1 then t.follow_redirects = opt { NIL, false, true, "yes" } end
  if r(2) == 1 then t.body = opt { NIL, "", "abc", string.rep("b", 100), 7, false } end
  if r(3) == 1 then t.idempotent = opt { NIL, true, false, 1 } end
  if r(2) == 1 then
    t.headers = opt { NIL, { "X-A: 1" }, { ["X-B"] = "2", ["X-C"] = 3 }, { "X-A: 1", "Accept: text/plain" },
      { "bad" }, { ["Bad:Name"] = "x" }, "str", { [true] = "x" }, { ["X-D"] = "a\r\nb" },
      { ["Content-Type"] = "application/json", ["User-Agent"] = "gen/1" } }
  end
  for _ = 1, r(4) - 1 do -- keys that are no field of a request
    t[pick(r, { "query", "fields", "json", "URL", "Method", "header", "bodies", 1, 2, 2.5 })] = pick(r, { "x", 1, true, {} })
  end
  if r(10) == 1 then for k = 1, 40 do t["junk" .. k] = k end end -- a larger table
  if r(10) == 1 then for k = 1, 40 do t[k] = k end end -- an array part
  return t
end

describe("core.wire_client request table", function()
  local srv, c
  lazy_setup(function()
    srv = nginx.start("wire_reqtable", [[
      server {
        listen 127.0.0.1:${PORT};
        keepalive_requests 100000;
        location = /raw {
          content_by_lua_block { ngx.req.read_body(); ngx.print(ngx.req.raw_header(), ngx.req.get_body_data() or "") }
        }
        location = /slow { content_by_lua_block { ngx.sleep(0.2); ngx.print("slow") } }
      }
    ]], { PORT = PORT })
    c = core.wire_client {}
  end)
  lazy_teardown(function()
    if c then c:close() end
    if srv then srv:stop() end
  end)

  it("gives the same outcome read by rawget as by getfield, on generated tables", function()
    local seed = 11
    local function r(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n + 1
    end
    local kinds = { ok = 0, raise = 0, fail = 0 }
    for i = 1, 1500 do
      local t = gen(r, i)
      local copy = {}
      for k, v in pairs(t) do copy[k] = v end
      local direct = outcome(c, t)
      local behind = outcome(c, setmetatable({}, { __index = t }))
      local same = outcome(c, setmetatable(copy, {}))
      if behind ~= direct or same ~= direct then
        local d = {}
        for k, v in pairs(t) do d[#d + 1] = tostring(k) .. "=" .. tostring(v) end
        print("case " .. i .. ": " .. table.concat(d, " "))
      end
      assert.are.equal(behind, direct)
      assert.are.equal(same, direct)
      local kind = direct:match("^(%a+):")
      kinds[kind] = kinds[kind] + 1
    end
    -- every kind of outcome, each many times: the comparison covered them all
    assert.is_true(kinds.ok > 200, "ok " .. kinds.ok)
    assert.is_true(kinds.raise > 200, "raise " .. kinds.raise)
    assert.is_true(kinds.fail > 10, "fail " .. kinds.fail)
  end)

  it("reads every field of a plain table", function()
    local url = BASE .. "/raw"
    local cases = {
      { { url = 1 }, "'url' must be a string" },
      { { url = url, method = 1 }, "'method' must be a string" },
      { { url = url, timeout = "x" }, "'timeout' must be a number" },
      { { url = url, connect_timeout = "x" }, "'connect_timeout' must be a number" },
      { { url = url, stall_timeout = "x" }, "'stall_timeout' must be a number" },
      { { url = url, follow_redirects = "x" }, "'follow_redirects' must be a boolean" },
      { { url = url, body = 1 }, "'body' must be a string" },
      { { url = url, idempotent = "x" }, "'idempotent' must be a boolean" },
      { { url = url, send_timeout = "x" }, "'send_timeout' must be a number" },
      { { url = url, read_timeout = "x" }, "'read_timeout' must be a number" },
      { { url = url, headers = "x" }, "'headers' must be a table" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(c.request, c, case[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), case[2] .. " / " .. tostring(err))
    end
    -- and what each sends
    local res = assert(c:request { url = url, method = "PUT", body = "hello", headers = { ["X-T"] = "1" } })
    assert.truthy(res.body:find("^PUT /raw HTTP/1.1\r\n"))
    assert.truthy(res.body:find("\r\nX-T: 1\r\n", 1, true))
    assert.truthy(res.body:find("\r\n\r\nhello$"))
  end)

  it("writes no body for a HEAD (as libcurl): the next request on the connection is its own", function()
    local res = assert(c:request { url = BASE .. "/raw", method = "HEAD", body = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" })
    assert.are.equal(200, res.status)
    res = assert(c:request { url = BASE .. "/raw?next", method = "PUT", body = "b" })
    assert.are.equal(200, res.status)
    assert.truthy(res.body:find("^PUT /raw%?next HTTP/1.1\r\n"), res.body)
  end)

  it("asks __index for the fields a table lacks", function()
    local res = assert(c:request(setmetatable({}, { __index = { url = BASE .. "/raw", body = "via index" } })))
    assert.truthy(res.body:find("^POST /raw HTTP/1.1\r\n"))
    assert.truthy(res.body:find("\r\n\r\nvia index$"))
  end)

  it("finds a CR, LF or NUL at any place of a header value or name, and passes one without", function()
    local bad_value = "header values must not contain CR, LF or NUL"
    for n = 1, 40 do
      for at = 1, n do
        for _, ch in ipairs { "\r", "\n", "\0" } do
          local v = string.rep("v", at - 1) .. ch .. string.rep("v", n - at)
          local ok, err = pcall(c.request, c, { url = "ftp://127.0.0.1/", headers = { ["X-V"] = v } })
          assert.is_false(ok)
          assert.truthy(tostring(err):find(bad_value, 1, true), tostring(err))
          ok, err = pcall(c.request, c, { url = "ftp://127.0.0.1/", headers = { "X-V: " .. v } })
          assert.is_false(ok)
          assert.truthy(tostring(err):find(bad_value, 1, true), tostring(err))
          ok, err = pcall(c.request, c, { url = "ftp://127.0.0.1/", headers = { ["X" .. v] = "1" } })
          assert.is_false(ok)
          assert.truthy(tostring(err):find("invalid header name", 1, true), tostring(err))
        end
      end
      -- every other byte passes (the unusable URL fails after the headers were checked)
      local clean = {}
      for i = 1, n do clean[i] = string.char(1 + (i * 37) % 255) end
      local v = table.concat(clean):gsub("[\r\n%z]", "x")
      local res, msg, code = c:request { url = "ftp://127.0.0.1/", headers = { ["X-V"] = v, "X-W: " .. v } }
      assert.is_nil(res)
      assert.are.equal("unusable_url", code, msg)
    end
  end)
end)
