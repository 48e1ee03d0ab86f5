-- The fault server: a hostile HTTP peer on 127.0.0.1 for spec/fault_spec.lua (Lua 5.4,
-- LuaSocket and LuaSec; one process, coroutines over socket.select).
--
--   lua5.4 spec/support/fault_server.lua DIR HTTP_PORT UNTRUSTED_PORT WRONGHOST_PORT DNS_PORT
--
-- HTTP_PORT: the first path segment names the cell ("/hang/PaymentDealer/DoDirectPayment").
-- Every complete request (headers and Content-Length body read) is recorded before the cell
-- misbehaves, so the log says exactly what reached the server. GET /_log answers the record
-- as JSON {requests = [{cell, method, path, conn, nth}], conns = {port = n}, handshakes =
-- {port = n}}; GET /_reset empties it (neither is recorded).
-- UNTRUSTED_PORT, WRONGHOST_PORT: TLS with DIR/untrusted.crt (a CA nobody trusts) and
-- DIR/wronghost.crt (the test CA, for wrong.example); a request that gets through anyway is
-- recorded under cell "tls_untrusted" / "tls_wronghost" and answered 200.
-- DNS_PORT (UDP): A records for "localhost" and names under ".test" (127.0.0.1); NXDOMAIN for
-- anything else (for nginx's resolver: it does not read /etc/hosts).
-- DIR/ready is written once every socket listens.
local socket = require "socket"
local ssl = require "ssl"
local cjson = require "cjson"

local dir = assert(arg[1], "usage: fault_server.lua DIR HTTP UNTRUSTED WRONGHOST DNS")
local HTTP, UNTRUSTED, WRONGHOST, DNS = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])

local record = { requests = {}, conns = {}, handshakes = {} }
local conn_seq = 0

-- ---- the scheduler: a task yields ("r" | "w", sock) or ("t", seconds) ----------------------
local waits = {} -- co -> {kind, sock, wake}

local function resume(co, ...)
  local ok, kind, x = coroutine.resume(co, ...)
  if not ok then io.stderr:write("fault server task failed: ", tostring(kind), "\n") end
  if coroutine.status(co) == "dead" then waits[co] = nil; return end
  waits[co] = { kind, x, kind == "t" and socket.gettime() + x or nil }
end

local function spawn(fn, ...) resume(coroutine.create(fn), ...) end
local function sleep(s) coroutine.yield("t", s) end

-- Reads what is there (at least one byte); nil when the peer closed.
local function recv(c)
  while true do
    local data, err, part = c:receive(8192)
    if data then return data end
    if part and #part > 0 then return part end
    if err == "closed" then return nil end
    if err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then return nil end
    coroutine.yield(err == "wantwrite" and "w" or "r", c)
  end
end

local function send(c, data)
  local i = 1
  while i <= #data do
    local n, err, last = c:send(data, i)
    if n then return true end
    if err ~= "timeout" and err ~= "wantwrite" and err ~= "wantread" then return nil end
    i = (last or i - 1) + 1
    coroutine.yield(err == "wantread" and "r" or "w", c)
  end
  return true
end

-- A TCP reset instead of an orderly close: SO_LINGER with a zero timeout.
local function reset(c)
  c:setoption("linger", { on = true, timeout = 0 })
  c:close()
end

-- ---- requests --------------------------------------------------------------------------------
-- Reads one request from the connection (buf: leftover bytes); returns req, rest or nil.
local function read_request(c, buf)
  while not buf:find("\r\n\r\n", 1, true) do
    local more = recv(c)
    if not more then return nil end
    buf = buf .. more
  end
  local head_end = buf:find("\r\n\r\n", 1, true)
  local head = buf:sub(1, head_end - 1)
  buf = buf:sub(head_end + 4)
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.%d")
  if not method then return nil end
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  local len = tonumber(headers["content-length"] or "0") or 0
  while #buf < len do
    local more = recv(c)
    if not more then return nil end
    buf = buf .. more
  end
  return { method = method, path = target, headers = headers, body = buf:sub(1, len) }, buf:sub(len + 1)
end

local function response(status, ctype, body, extra)
  local lines = { "HTTP/1.1 " .. status, "Content-Type: " .. ctype, "Content-Length: " .. #body }
  for _, h in ipairs(extra or {}) do lines[#lines + 1] = h end
  lines[#lines + 1] = "Connection: keep-alive"
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local OK_BODY = '{"ok":true}'

-- cell -> function(conn, req, nth) -> keep (true: read the next request on this connection)
local CELLS = {
  ok = function(c) return send(c, response("200 OK", "application/json", OK_BODY)) end,
  reset_before = function(c) reset(c) end,
  reset_mid = function(c)
    send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"Data\":{\"Is")
    sleep(0.05)
    reset(c)
  end,
  hang = function() sleep(60) end,
  trickle = function(c)
    local body = '{"Data":null,"ResultCode":"Success","Message":"slowly"}'
    if not send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n") then return end
    for i = 1, #body do
      sleep(0.3)
      if not send(c, body:sub(i, i)) then return end
    end
  end,
  s500 = function(c) return send(c, response("500 Internal Server Error", "application/json", '{"error":"boom"}')) end,
  s502 = function(c) return send(c, response("502 Bad Gateway", "text/html", "<html>bad gateway</html>")) end,
  s503 = function(c) return send(c, response("503 Service Unavailable", "text/html", "<html>unavailable</html>")) end,
  s504 = function(c) return send(c, response("504 Gateway Timeout", "text/html", "<html>gateway timeout</html>")) end,
  garbage = function(c) return send(c, response("200 OK", "application/json", "<html>\1\2 not json }{")) end,
  truncated = function(c)
    return send(c, response("200 OK", "application/json", '{"Data":{"IsSuccessful":true,"VirtualPosOrderId":"ORD'))
  end,
  oversize = function(c)
    send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
    local chunk = string.rep(" ", 65536)
    for _ = 1, 16 do if not send(c, chunk) then return end end
  end,
  wrong_ct = function(c)
    return send(c, response("200 OK", "text/html", "<html><body>Welcome to our portal</body></html>"))
  end,
  bad_chunk = function(c)
    send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
  end,
  dup_cl = function(c)
    send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
      .. OK_BODY)
  end,
  bad_status = function(c)
    send(c, "HTTP/1.1 21 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #OK_BODY .. "\r\n\r\n" .. OK_BODY)
  end,
  -- the first request of a connection is answered (keep-alive); any later one is read, then
  -- the connection is closed without a word
  -- answered with keep-alive, then the connection is closed while idle (0.1 s later)
  idle_close = function(c)
    send(c, response("200 OK", "application/json", OK_BODY))
    sleep(0.1)
  end,
  -- (per connection and per key, the second path segment: a connection pooled by one case
  -- and reused by the next starts that case afresh)
  drop_second = function(c, req, _, conn_state)
    local key = req.path:match("^/drop_second/([%w_]+)") or ""
    conn_state[key] = (conn_state[key] or 0) + 1
    if conn_state[key] == 1 then return send(c, response("200 OK", "application/json", OK_BODY)) end
  end,
}

local function control(c, req)
  if req.path == "/_log" then
    local body = cjson.encode(record)
    send(c, response("200 OK", "application/json", body))
    return true
  elseif req.path == "/_reset" then
    record = { requests = {}, conns = {}, handshakes = {} }
    send(c, response("200 OK", "application/json", "{}"))
    return true
  end
end

local function bump(t, k) t[k] = (t[k] or 0) + 1 end

local function serve(c, port, tls_cell, params)
  c:settimeout(0)
  bump(record.conns, tostring(port))
  conn_seq = conn_seq + 1
  local conn = conn_seq
  if params then
    local s = ssl.wrap(c, params)
    if not s then c:close(); return end
    s:settimeout(0)
    while true do
      local ok, err = s:dohandshake()
      if ok then break end
      if err ~= "wantread" and err ~= "wantwrite" then s:close(); return end
      coroutine.yield(err == "wantread" and "r" or "w", s)
    end
    bump(record.handshakes, tostring(port))
    c = s
  end
  local buf, nth, conn_state = "", 0, {}
  while true do
    local req, rest = read_request(c, buf)
    if not req then c:close(); return end
    buf = rest
    if not (req.method == "GET" and control(c, req)) then
      nth = nth + 1
      local cell = tls_cell or req.path:match("^/([%w_]+)") or "?"
      record.requests[#record.requests + 1] = { cell = cell, method = req.method, path = req.path, conn = conn, nth = nth,
        headers = req.headers, size = #req.body }
      local fn = tls_cell and CELLS.ok or CELLS[cell]
      local keep = fn and fn(c, req, nth, conn_state)
      if not fn then keep = send(c, response("404 Not Found", "text/plain", "no such cell")) end
      if not keep then pcall(c.close, c); return end
    end
  end
end

-- ---- DNS (UDP) -------------------------------------------------------------------------------
local function dns_answer(q)
  if #q < 12 then return nil end
  local pos, labels = 13, {}
  while true do
    local n = q:byte(pos)
    if not n then return nil end
    if n == 0 then break end
    labels[#labels + 1] = q:sub(pos + 1, pos + n)
    pos = pos + n + 1
  end
  local qtype = (q:byte(pos + 1) or 0) * 256 + (q:byte(pos + 2) or 0)
  local question = q:sub(13, pos + 4)
  local name = table.concat(labels, "."):lower()
  local known = name == "localhost" or name:sub(-5) == ".test"
  local rcode = known and 0 or 3
  local answers = (known and qtype == 1) and 1 or 0
  local out = q:sub(1, 2) .. string.char(0x81, 0x80 + rcode, 0, 1, 0, answers, 0, 0, 0, 0) .. question
  if answers == 1 then out = out .. string.char(0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1) end
  return out
end

-- ---- listeners -------------------------------------------------------------------------------
local function listen(port)
  local s = assert(socket.bind("127.0.0.1", port, 64)) -- SO_REUSEADDR set by LuaSocket
  s:settimeout(0)
  return s
end

local function tls_params(name)
  return { mode = "server", protocol = "any", key = dir .. "/" .. name .. ".key",
           certificate = dir .. "/" .. name .. ".crt", options = { "all", "no_sslv2", "no_sslv3" } }
end

local servers = {
  { sock = listen(HTTP), port = HTTP },
  { sock = listen(UNTRUSTED), port = UNTRUSTED, cell = "tls_untrusted", params = assert(ssl.newcontext(tls_params("untrusted"))) },
  { sock = listen(WRONGHOST), port = WRONGHOST, cell = "tls_wronghost", params = assert(ssl.newcontext(tls_params("wronghost"))) },
}
local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", DNS))
udp:settimeout(0)

do
  local f = assert(io.open(dir .. "/ready", "w")); f:write("ready\n"); f:close()
end

while true do
  local rt, wt, by_sock = { udp }, {}, {}
  for _, srv in ipairs(servers) do rt[#rt + 1] = srv.sock end
  local now, timeout = socket.gettime(), 0.5
  for co, w in pairs(waits) do
    if w[1] == "r" then rt[#rt + 1] = w[2]; by_sock[w[2]] = co
    elseif w[1] == "w" then wt[#wt + 1] = w[2]; by_sock[w[2]] = co
    elseif w[1] == "t" then timeout = math.min(timeout, math.max(0, w[3] - now)) end
  end
  local readable, writable = socket.select(rt, wt, timeout)
  for _, srv in ipairs(servers) do
    if readable[srv.sock] then
      local c = srv.sock:accept()
      if c then spawn(serve, c, srv.port, srv.cell, srv.params) end
    end
  end
  if readable[udp] then
    local q, ip, port = udp:receivefrom()
    if q then
      local a = dns_answer(q)
      if a then udp:sendto(a, ip, port) end
    end
  end
  local ready, seen = {}, {}
  local function add(co) if co and not seen[co] then seen[co] = true; ready[#ready + 1] = co end end
  for _, s in ipairs(readable) do add(by_sock[s]) end
  for _, s in ipairs(writable) do add(by_sock[s]) end
  now = socket.gettime()
  for co, w in pairs(waits) do
    if w[1] == "t" and w[3] <= now then add(co) end
  end
  for _, co in ipairs(ready) do
    waits[co] = nil
    resume(co)
  end
end
