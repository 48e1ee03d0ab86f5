-- The in-nginx half of bench/nginx_cost.lua: GET /cost?port=P&n=N&rounds=R&scenario=moka
-- runs, in this worker, N calls of each mode, R interleaved rounds, and answers one line per
-- mode: "<mode> <min us> <median us>" of the worker's CPU (os.clock) per call.
--   raw      one held keep-alive connection, the captured bytes, answer read by lines + length
--   rawpool  the same, the connection taken from nginx's pool and given back per call
--   pool     only ngx.socket.tcp + connect (a pool hit) + setkeepalive, no request
--   rawany   raw with the answer taken by one receiveany (the floor of a cosocket exchange)
--   poolany  rawany on one kept object whose connection is taken from nginx's pool and given
--            back per call (connect + setkeepalive: the floor of paykit.cosocket's exchange)
--   poolnt   one kept object, connect (a pool hit) + setkeepalive per call, its timeouts set once;
--   poolrt   poolnt + getreusedtimes; poolrt2 poolrt + settimeouts per call (what each costs)
--   cosocket paykit.cosocket.request with the headers paykit.http passes (a map)
--   cosocketid the same with a new X-Correlation-Id (same length) on every call, as paykit.http
--            sends (requests of one length differing in a few bytes: LuaJIT interns each string)
--   http     paykit.http:request (retry = false, correlation header) of that request
--   paykit   the whole provider call (bench/providers.lua)
local M = {}

local function read_req(root, scenario)
  local f = assert(io.open(root .. "/build/bench/" .. scenario .. "-nginx.req", "rb"))
  local raw = f:read("*a"); f:close()
  return raw
end

local function raw_mode(raw, port, expect, pooled)
  local sock
  local function connect()
    sock = ngx.socket.tcp()
    sock:settimeout(10000)
    return sock:connect("127.0.0.1", port, { pool = "cost-raw" })
  end
  local function exchange()
    if not sock:send(raw) then return false end
    local line = sock:receive("*l")
    if not line then return false end
    local len
    while true do
      local h = sock:receive("*l")
      if not h then return false end
      if h == "" then break end
      local n = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
      if n then len = tonumber(n) end
    end
    return len and sock:receive(len) == expect
  end
  if not pooled then
    assert(connect())
    return exchange
  end
  return function()
    if not connect() then return false end
    local good = exchange()
    if good then sock:setkeepalive(600000, 32) else sock:close() end
    return good
  end
end

-- one receiveany per answer: the whole answer in one read (the usual case on loopback)
local function any_mode(raw, port, expect, pooled)
  local sock = ngx.socket.tcp()
  local opts = { pool = "cost-any" }
  local tail = #expect
  local function exchange()
    if not sock:send(raw) then return false end
    local data = sock:receiveany(65536)
    return data ~= nil and data:sub(-tail) == expect
  end
  if not pooled then
    sock:settimeouts(10000, 10000, 10000)
    assert(sock:connect("127.0.0.1", port, opts))
    return exchange
  end
  return function()
    sock:settimeouts(10000, 10000, 10000)
    if not sock:connect("127.0.0.1", port, opts) then return false end
    local good = exchange()
    if good then sock:setkeepalive(600000, 32) else sock:close() end
    return good
  end
end

local function pool_mode(port)
  local opts = { pool = "cost-pool" }
  local s = ngx.socket.tcp(); assert(s:connect("127.0.0.1", port, opts)); s:setkeepalive(600000, 32)
  return function()
    local sock = ngx.socket.tcp()
    sock:settimeout(10000)
    if not sock:connect("127.0.0.1", port, opts) then return false end
    return sock:setkeepalive(600000, 32) == 1
  end
end

-- the captured request as paykit.http hands it to the transport: method, url, a header map
local function as_req(raw, port)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.1")
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    local l = name:lower()
    if l ~= "content-length" and l ~= "connection" and l ~= "host" and l ~= "user-agent" then headers[name] = value end
  end
  return { method = method, url = "http://127.0.0.1:" .. port .. target, headers = headers, body = body,
    timeout = 10000, connect_timeout = 10000 }
end

function M.make(root, scenario, mode, port)
  local expect = require("bench.fixtures")[scenario .. "_answer"]
  if mode == "raw" or mode == "rawpool" then return raw_mode(read_req(root, scenario), port, expect, mode == "rawpool") end
  if mode == "pool" then return pool_mode(port) end
  if mode == "poolnt" or mode == "poolrt" or mode == "poolrt2" then
    local opts = { pool = "cost-pool" }
    local sock = ngx.socket.tcp()
    sock:settimeouts(10000, 10000, 10000)
    return function()
      if mode == "poolrt2" then sock:settimeouts(10000, 10000, 10000) end
      if not sock:connect("127.0.0.1", port, opts) then return false end
      if mode ~= "poolnt" then sock:getreusedtimes() end
      return sock:setkeepalive(600000, 32) == 1
    end
  end
  if mode == "rawany" or mode == "poolany" then
    return any_mode(read_req(root, scenario), port, expect, mode == "poolany")
  end
  if mode == "pooltcp" then
    return function() local sock = ngx.socket.tcp(); sock:settimeouts(10000, 10000, 10000); return true end
  end
  if mode == "poolobj" then
    local opts = { pool = "cost-pool" }
    local sock = ngx.socket.tcp()
    return function()
      sock:settimeouts(10000, 10000, 10000)
      if not sock:connect("127.0.0.1", port, opts) then return false end
      return sock:setkeepalive(600000, 32) == 1
    end
  end
  if mode == "cosocket" or mode == "cosocketid" then
    local req = as_req(read_req(root, scenario), port)
    local cosocket = require "paykit.cosocket"
    local ids, corr = mode == "cosocketid", nil
    for k in pairs(req.headers) do if k:lower() == "x-correlation-id" then corr = k end end
    local opts = { lead_header = corr } -- as paykit.http passes its correlation header
    local uuid4 = require("paykit.core").uuid4
    return function()
      if ids and corr then req.headers[corr] = uuid4() end
      local res, err = cosocket.request(req, opts)
      if not (res ~= nil and res.status == 200 and res.body == expect) then
        return false, res and ("status " .. res.status .. ", body of " .. #res.body .. " bytes") or err
      end
      return true
    end
  end
  if mode == "http" then
    local req = as_req(read_req(root, scenario), port)
    req.headers["X-Correlation-Id"] = nil
    req.timeout, req.connect_timeout = nil, nil
    local t = require("paykit.http").new { retry = false }
    return function()
      local res = t:request(req)
      return res ~= nil and res.status == 200 and res.body == expect
    end
  end
  return (require("bench.providers").make(scenario, "http://127.0.0.1:" .. port))
end

function M.run(root)
  local args = ngx.req.get_uri_args()
  local port, n = tonumber(args.port), tonumber(args.n) or 2000
  local rounds, scenario = tonumber(args.rounds) or 5, args.scenario or "moka"
  local modes = {}
  for m in (args.modes or "raw,rawpool,pool,cosocket,http,paykit"):gmatch("[^,]+") do modes[#modes + 1] = m end
  local fns, runs = {}, {}
  for i, m in ipairs(modes) do
    fns[i] = M.make(root, scenario, m, port)
    runs[i] = {}
    for _ = 1, 50 do
      local good, why = fns[i]()
      if not good then error(m .. ": wrong answer: " .. tostring(why)) end
    end
  end
  for r = 1, rounds do
    for i, fn in ipairs(fns) do
      collectgarbage()
      local c0 = os.clock()
      local bad = 0
      for _ = 1, n do if not fn() then bad = bad + 1 end end
      runs[i][r] = (os.clock() - c0) * 1e6 / n
      if bad > 0 then ngx.say(modes[i], " ERRORS ", bad) end
    end
  end
  for i, m in ipairs(modes) do
    local t = runs[i]
    table.sort(t)
    ngx.say(string.format("%-9s %7.1f %7.1f", m, t[1], t[math.floor((#t + 1) / 2)]))
  end
end

return M
