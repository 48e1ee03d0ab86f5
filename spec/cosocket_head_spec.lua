-- paykit.cosocket reads the usual answer without the C parser (fast_head): wherever it takes an
-- answer, it must give what core.http_response_parser gives for the same bytes (status, headers,
-- body, keep-alive), and it must leave every unusual answer to the C parser.
local core = require "paykit.core"
local cosocket = require "paykit.cosocket"
local fast = cosocket._fast_head

local function c_parse(data, max_body)
  local p = core.http_response_parser { max_body = max_body }
  local done, err, code = p:feed(data)
  if done == nil then p:close(); return nil, err, code end
  if not done then p:close(); return false end
  local res = p:result()
  p:close()
  return res
end

local function fast_parse(data, max_body)
  local status, headers, body_at, length, keep = fast(data, max_body)
  if not status then return nil end
  local have = #data - body_at + 1
  if have < length then return nil end
  if have > length then keep = false end
  return { status = status, headers = headers, body = data:sub(body_at, body_at + length - 1), keepalive = keep }
end

local CRLF = "\r\n"
local function answer(status_line, headers, body)
  return status_line .. CRLF .. table.concat(headers, CRLF) .. (#headers > 0 and CRLF or "") .. CRLF .. body
end

describe("paykit.cosocket fast answer reading", function()
  local taken = {
    answer("HTTP/1.1 200 OK", { "Content-Type: application/json", "Content-Length: 11" }, '{"a":"b c"}'),
    answer("HTTP/1.1 201 Created", { "content-length: 0" }, ""),
    answer("HTTP/1.1 404 Not Found", { "Server: x", "Content-Length: 3", "Connection: close" }, "abc"),
    answer("HTTP/1.1 503 Busy", { "Set-Cookie: a=1", "Set-Cookie: b=2", "Content-Length: 2" }, "no"),
    answer("HTTP/1.1 200 OK", { "X-Id:abc", "Content-Length: 2", "Connection: Keep-Alive" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2" }, "ok") .. "HTTP/1.1 200 OK", -- bytes beyond it
  }
  for i, data in ipairs(taken) do
    it("takes usual answer " .. i .. " and gives what the C parser gives", function()
      local f = fast_parse(data, 1000)
      assert.is_table(f)
      local c = c_parse(data, 1000)
      assert.is_table(c)
      assert.same(c, f)
    end)
  end

  local left = {
    answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" }, "2\r\nok\r\n0\r\n\r\n"),
    answer("HTTP/1.0 200 OK", { "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 100 Continue", {}, "") .. answer("HTTP/1.1 200 OK", { "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 204 No Content", { "Content-Length: 2" }, ""),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: +2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2000" }, "ok"), -- above max_body: too_large
    answer("HTTP/1.1 200 OK", { "Bad Name: x", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v\nX-B: w", "Content-Length: 2" }, "ok"), -- a bare LF
    answer("HTTP/1.1 200 OK", { "X-A: v\0w", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A:  padded ", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v", " folded", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Connection: upgrade", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v" }, "ok"), -- no length: read to the close
    answer("HTTP/1.1 999 What", { "Content-Length: 2" }, "ok"),
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", -- the head is not whole yet
  }
  for i, data in ipairs(left) do
    it("leaves unusual answer " .. i .. " to the C parser", function()
      assert.is_nil((fast(data, 1000)))
    end)
  end
end)

-- Over generated answers, usual and mutated (cut short, a byte changed, a bare LF, bytes beyond
-- the answer), every answer the fast reading takes is what the C parser gives for the same bytes.
describe("paykit.cosocket fast answer reading over generated answers", function()
  local unpack = table.unpack or unpack
  local function pack(...) return { n = select("#", ...), ... } end

  local STATUS = { "HTTP/1.1 200 OK", "HTTP/1.1 201 Created", "HTTP/1.1 404 Not Found", "HTTP/1.1 503 Busy",
    "HTTP/1.1 599 x", "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified", "HTTP/1.1 100 Continue",
    "HTTP/1.1 199 x", "HTTP/1.1 600 x", "HTTP/1.0 200 OK", "HTTP/1.1 200", "HTTP/1.1 20 OK", "HTTP/1.1 2x0 OK",
    "http/1.1 200 OK", "HTTP/1.1 200 \0K", "HTTP/1.1  200 OK", "HTTP/1.1 200 O\nK" }
  local NAMES = { "Content-Type", "content-type", "X-Request-Id", "Server", "Date", "Set-Cookie", "set-cookie",
    "X-A", "x-a", "X_B", "Bad Name", "X@Y", "", "X-\0", "X-\128", "Connection", "CONNECTION",
    "Transfer-Encoding", "transfer-encoding", "Content-Length", "CONTENT-LENGTH",
    string.rep("Long-Name-", 10) }
  local VALUES = { "application/json", "v", "a b", " lead", "trail ", "\ttab", "tab\t", "", "x\0y", "x\ny",
    "x\ry", "\200\255", "keep-alive", "Keep-Alive", "close", "CLOSE", "upgrade", "chunked", "a,b", ":", "a: b" }
  local LENGTHS = { "0", "2", "12", "+2", "-1", "0012", "1 2", "2 ", "999999999999999", "1000000000000000",
    "20", "100000", "2a", "" }

  -- half the answers from the usual parts only (taken unless cut or changed below)
  local GOOD_NAMES = { "Content-Type", "content-type", "X-Request-Id", "Server", "Date", "Set-Cookie", "set-cookie", "X-A",
    "x-a", "X_B", "Connection", "CONNECTION" }
  local GOOD_VALUES = { "application/json", "v", "a b", "\200\255", "keep-alive", "Keep-Alive", "close", "CLOSE", "a,b", ":",
    "a: b" }
  local function gen(rnd)
    local usual = rnd(2) == 1
    local statuses, names, values = STATUS, NAMES, VALUES
    if usual then statuses, names, values = { STATUS[1], STATUS[2], STATUS[3], STATUS[4], STATUS[5] }, GOOD_NAMES, GOOD_VALUES end
    local lines = { statuses[rnd(#statuses)] }
    local body = ({ "", "ok", '{"a":"b c"}', "abcdefghijklmnopqrstuvwxyz" })[rnd(4)]
    local n = rnd(0, 6)
    for _ = 1, n do
      local name = names[rnd(#names)]
      local value = (name:lower() == "content-length") and LENGTHS[rnd(#LENGTHS)] or values[rnd(#values)]
      local sep = usual and ({ ": ", ":" })[rnd(2)] or ({ ": ", ":", ":  ", " : ", ":\t" })[rnd(5)]
      lines[#lines + 1] = name .. sep .. value
    end
    -- most answers carry a right Content-Length somewhere
    if rnd(4) > 1 then table.insert(lines, rnd(2, #lines + 1), "Content-Length: " .. #body) end
    local data = table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
    local m = rnd(10)
    if m == 1 then data = data:sub(1, rnd(0, #data)) -- cut short
    elseif m == 2 then data = data .. "HTTP/1.1 200 OK\r\n" -- bytes beyond it
    elseif m == 3 and #data > 0 then -- one byte changed
      local i = rnd(#data)
      data = data:sub(1, i - 1) .. string.char(({ 0, 10, 13, 32, 9, 58, 65, 200 })[rnd(8)]) .. data:sub(i + 1)
    elseif m == 4 then data = data:gsub("\r\n", "\n", 1) -- a bare LF
    end
    return data
  end

  it("gives the C parser's answer wherever it takes one, over 20000 generated answers", function()
    local seed = 11
    local function rnd(a, b) -- Park-Miller (products below 2^53): the same inputs on Lua 5.4 and LuaJIT
      seed = (seed * 16807) % 2147483647
      if b == nil then a, b = 1, a end
      return a + seed % (b - a + 1)
    end
    local taken, max_bodies = 0, { 1000, 20, 8388608, 0 }
    for i = 1, 20000 do
      local data = gen(rnd)
      local max_body = max_bodies[i % 4 + 1]
      local c = pack(fast(data, max_body))
      if c[1] then
        taken = taken + 1
        local status, headers, body_at, length, keep = unpack(c, 1, 5)
        local have = #data - body_at + 1
        if have >= length then
          local parsed = c_parse(data, max_body)
          assert.is_table(parsed, string.format("input %d %q", i, data))
          assert.same(parsed, { status = status, headers = headers, body = data:sub(body_at, body_at + length - 1),
            keepalive = have == length and keep })
        end
      end
    end
    assert.is_true(taken > 2000, "too few usual answers generated: " .. taken)
  end)
end)

-- read_head (what a call uses) keeps the heads fast_head took and gives, for a head it has
-- seen, what fast_head gives: over the generated answers, each read several times with
-- other max_body values and bodies, the outcome must equal fast_head's and every headers
-- table must be a table of its own (a caller changing one changes no later answer).
describe("paykit.cosocket answer heads read again", function()
  local function pack(...) return { n = select("#", ...), ... } end
  local read = cosocket._read_head

  local function same_as_fast(data, max_body, where)
    local want = pack(fast(data, max_body))
    local got = pack(read(data, max_body))
    assert.same(want, got, where)
    if got[2] then
      assert.are_not.equal(want[2], got[2])
      got[2]["x-changed"] = "by the caller" -- must not reach the next answer
    end
    return got[1] ~= nil
  end

  it("gives fast_head's outcome for heads seen before and new, over generated answers", function()
    local seed = 23
    local function rnd(a, b)
      seed = (seed * 16807) % 2147483647
      if b == nil then a, b = 1, a end
      return a + seed % (b - a + 1)
    end
    local HEADS = {
      "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 03 Dec 2026 14:00:00 GMT\r\nContent-Type: application/json\r\n",
      "HTTP/1.1 201 Created\r\nX-A: v\r\nConnection: close\r\n",
      "HTTP/1.1 503 Busy\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n",
      "HTTP/1.1 200 OK\r\nX-A: v\nX-B: w\r\n", -- a bare LF: never taken
      "HTTP/1.1 204 No Content\r\n",
    }
    local BODIES = { "", "ok", '{"a":"b c"}', string.rep("x", 40) }
    local taken, max_bodies = 0, { 1000, 20, 8388608, 0, 2 }
    for i = 1, 6000 do
      local body = BODIES[rnd(#BODIES)]
      local length = rnd(3) == 1 and rnd(0, 45) or #body
      local data = HEADS[rnd(#HEADS)] .. "Content-Length: " .. length .. "\r\n\r\n" .. body
      if rnd(8) == 1 then data = data .. "HTTP/1.1 200 OK\r\n" end
      if rnd(8) == 1 then data = data:sub(1, rnd(0, #data)) end
      for _ = 1, rnd(3) do
        if same_as_fast(data, max_bodies[rnd(#max_bodies)], string.format("input %d %q", i, data)) then
          taken = taken + 1
        end
      end
    end
    assert.is_true(taken > 3000, "too few answers taken: " .. taken)
  end)

  it("never keeps a head that sets a cookie, and keeps one that does not", function()
    cosocket._heads_reset()
    for _, name in ipairs { "Set-Cookie", "set-cookie", "SET-COOKIE", "sEt-CoOkIe" } do
      local head = "HTTP/1.1 200 OK\r\n" .. name .. ": session=s3cr3t-" .. name .. "\r\nContent-Length: 2\r\n\r\n"
      assert.is_true(same_as_fast(head .. "ok", 1000, head))
      assert.is_true(same_as_fast(head .. "ok", 1000, head))
      assert.is_false(cosocket._head_kept(head), head)
    end
    local head = "HTTP/1.1 200 OK\r\nX-Cookie-Note: none\r\nContent-Length: 2\r\n\r\n"
    assert.is_true(same_as_fast(head .. "ok", 1000, head))
    assert.is_true(cosocket._head_kept(head))
  end)

  it("gives fast_head's outcome for answers whose heads all differ", function()
    local taken = 0
    for i = 1, 5000 do
      local data = "HTTP/1.1 200 OK\r\nX-Request-Id: " .. i .. "\r\nContent-Length: 2\r\n\r\nok"
      if same_as_fast(data, 1000, data) then taken = taken + 1 end
    end
    assert.equal(5000, taken)
  end)
end)

-- Outside a request (no request pointer from thread.exdata, or no thread.exdata, or one that
-- raises because the ffi module is not loaded: all can happen without resty.core) no cosocket
-- object is kept between calls, and nothing raises.
describe("paykit.cosocket over a stub ngx, outside any request", function()
  it("makes a new object per call and answers", function()
    local canned = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    local made = 0
    local mt = { __index = {
      settimeouts = function() end, settimeout = function() end, connect = function() return 1 end,
      getreusedtimes = function() return 1 end, send = function(_, s) return #s end,
      receiveany = function() return canned end, setkeepalive = function() return 1 end,
      close = function() return 1 end,
    } }
    local saved = rawget(_G, "ngx")
    _G.ngx = { socket = { tcp = function() made = made + 1; return setmetatable({}, mt) end },
      update_time = function() end, now = function() return 0 end }
    local ok, err = pcall(function()
      for _ = 1, 3 do
        local res, msg = cosocket.request { url = "http://127.0.0.1:9/x", body = "a=1", timeout = 1000 }
        assert.is_table(res, msg)
        assert.equal(200, res.status)
        assert.equal("ok", res.body)
      end
    end)
    _G.ngx = saved
    assert(ok, err)
    assert.equal(3, made)
  end)

  -- in a fresh LuaJIT with no ffi module loaded, thread.exdata raises: the call must not
  it("does not raise in a LuaJIT where the ffi module was never loaded", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local mt = { __index = {
  settimeouts = function() end, connect = function() return 1 end, getreusedtimes = function() return 1 end,
  send = function(_, s) return #s end, setkeepalive = function() return 1 end, close = function() return 1 end,
  receiveany = function() return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" end } }
ngx = { socket = { tcp = function() return setmetatable({}, mt) end }, update_time = function() end,
  now = function() return 0 end }
assert(package.loaded.ffi == nil, "ffi already loaded")
local res, err = require("paykit.cosocket").request { url = "http://127.0.0.1:9/x", body = "a=1" }
assert(res and res.status == 200, err)
]])
    f:close()
    local ok, _, code = os.execute("LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/luajit/?.so;;' luajit "
      .. script .. " >/dev/null 2>&1")
    os.remove(script)
    if type(ok) == "number" then ok, code = ok == 0, ok end
    assert.is_true(ok and (code == nil or code == 0), "the call raised in a plain LuaJIT")
  end)
end)

-- The request bytes: build_request (request lines, Host and User-Agent lines kept per conf,
-- checked header values remembered, each line's CRLF at the start of the next piece) must give
-- what the plain way of writing a request gives (the reference below: every line written out,
-- every value searched), over generated methods, header tables (maps, arrays, repeated
-- values, framing headers, Host and User-Agent given, bad names and values) and bodies, each
-- table sent twice (the second time from what was remembered), with as many distinct names and
-- values as fill the bounded tables.
describe("paykit.cosocket request bytes", function()
  local build, conf_of = cosocket._build_request, cosocket._conf_of
  local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true }
  -- (lead: the conf's lead header, written first when the map has it with a string value)
  local function ref_build(method, u, headers, body, user_agent, lead)
    local out = { method .. " " .. u.target .. " HTTP/1.1\r\n" }
    local has_host, has_ua = false, false
    local function add(name, value)
      name, value = tostring(name), tostring(value)
      if not name:find("^[!#$%%&'*+%-.^_`|~%w]+$") then return nil, "invalid header name" end
      if value:find("[\r\n%z]") then return nil, "invalid header value for " .. name end
      local l = name:lower()
      if l == "host" then has_host = true elseif l == "user-agent" then has_ua = true end
      if not FRAMING[l] then out[#out + 1] = name .. ": " .. value .. "\r\n" end
      return true
    end
    if headers ~= nil then
      if type(headers) ~= "table" then return nil, "headers must be a table" end
      local lv = lead and headers[lead]
      if lv ~= nil and type(lv) ~= "table" then
        local ok, e = add(lead, lv)
        if not ok then return nil, e end
      else
        lead = nil
      end
      for k, v in pairs(headers) do
        local ok, e = true, nil
        if k == lead then -- luacheck: ignore 542 (written first)
        elseif type(k) == "number" then
          local line = tostring(v)
          local colon = line:find(":", 1, true)
          if not colon or colon == 1 then return nil, "invalid header line" end
          ok, e = add(line:sub(1, colon - 1), (line:sub(colon + 1):gsub("^%s+", ""):gsub("%s+$", "")))
        elseif type(v) == "table" then
          ok = true
          for _, one in ipairs(v) do
            ok, e = add(k, one)
            if not ok then break end
          end
        else
          ok, e = add(k, v)
        end
        if not ok then return nil, e end
      end
    end
    if not has_host then out[#out + 1] = "Host: " .. u.authority .. "\r\n" end
    if not has_ua then out[#out + 1] = "User-Agent: " .. user_agent .. "\r\n" end
    if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
      out[#out + 1] = "Content-Length: " .. #(body or "") .. "\r\n"
    end
    return table.concat(out) .. "Connection: keep-alive\r\n\r\n" .. (body or "")
  end

  it("are the plain way's bytes over generated requests", function()
    local seed = 31
    local function rnd(a, b)
      seed = (seed * 16807) % 2147483647
      if b == nil then a, b = 1, a end
      return a + seed % (b - a + 1)
    end
    local METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PURGE", "BREW" }
    local NAMES = { "Accept", "Content-Type", "X-Correlation-Id", "Authorization", "Host", "host", "User-Agent",
      "user-agent", "Content-Length", "Transfer-Encoding", "Connection", "X-A", "Bad Name", "X@Y", "", 7 }
    local VALUES = { "application/json", "v", "", "a b", "x\ry", "x\ny", "x\0y", 42, 1.5, "\200\255", "a: b" }
    local BODIES = { false, "", "a=1", string.rep("{}", 300) }
    local confs = {
      assert(conf_of("http://127.0.0.1:18846/PaymentDealer/DoDirectPaymentThreeD?x=1", {})),
      assert(conf_of("https://api.example:8443/", { user_agent = "shop/2" })),
      assert(conf_of("http://[::1]/a/b", { user_agent = 17 })),
      assert(conf_of("http://127.0.0.1:18846/v1/verify", { lead_header = "X-Correlation-Id" })),
    }
    local leads = 0
    local built = 0
    for i = 1, 6000 do
      local c = confs[rnd(#confs)]
      local method = METHODS[rnd(#METHODS)]
      local body = BODIES[rnd(#BODIES)] or nil
      local headers
      local kind = rnd(6)
      if kind == 1 then
        headers = nil
      elseif kind == 2 then
        headers = "Accept: x" -- not a table
      else
        headers = {}
        for _ = 1, rnd(0, 6) do
          local name = rnd(6) == 1 and ("X-R" .. rnd(2000)) or NAMES[rnd(#NAMES)]
          local value = rnd(5) == 1 and ("v" .. rnd(100000)) or VALUES[rnd(#VALUES)]
          if kind == 3 then
            headers[#headers + 1] = tostring(name) .. ({ ": ", ":", ":  ", " :" })[rnd(4)] .. tostring(value)
              .. ({ "", " ", "\t" })[rnd(3)]
          elseif rnd(4) == 1 then
            headers[name] = { value, VALUES[rnd(#VALUES)] }
          else
            headers[name] = value
          end
        end
      end
      for _ = 1, 2 do
        local want, werr = ref_build(method, c.u, headers, body, c.user_agent, c.lead)
        local nl = want and want:find("\n", 1, true)
        if nl and c.lead and type(headers) == "table" and type(headers[c.lead]) == "string"
            and want:sub(nl + 1, nl + #c.lead + 2) == c.lead .. ": " then
          leads = leads + 1
        end
        local got, gerr = build(method, c, headers, body)
        assert.equal(want, got, string.format("input %d", i))
        assert.equal(werr, gerr, string.format("input %d", i))
        if got then built = built + 1 end
      end
    end
    assert.is_true(built > 4000, "too few requests built: " .. built)
    assert.is_true(leads > 20, "too few requests with the lead header first: " .. leads)
  end)
end)
