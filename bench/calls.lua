-- One benchmark run of whole provider calls, in its own process so that its CPU time is its own.
--   <lua> bench/calls.lua SCENARIO MODE BASE_URL AMOUNT [IN_FLIGHT] [CAFILE]
-- SCENARIO: moka (Moka 3D start), mocopay (MoCoPay verifyPayment), zippy (Zippy create
--   transaction), bare (paykit.core's client sending the request in build/bench/moka-http.req),
--   http (a paykit.http transport sending that request: the transport layer without a provider),
--   luasocket (a plain-Lua keep-alive loop over luasocket/luasec sending those same bytes).
-- MODE:
--   seq     one call after another on one keep-alive connection for AMOUNT seconds
--   count   AMOUNT calls one after another on one keep-alive connection (for callgrind:
--           bench/whole_cost.lua)
--   batch   AMOUNT calls through paykit.batch, IN_FLIGHT at once
--   mem     like batch, and prints the memory the batch took (RSS before, peak, after)
--           (PAYKIT_BENCH_GC_PAUSE: the batch's gc_pause option)
--   core    (bare only) AMOUNT requests through the core client's own batch(), IN_FLIGHT at once:
--           the transport's floor at that concurrency, no Lua per request
--   once    one call (the capture run)
--   batchonce  one call as the only task of a paykit.batch (the capture of the batch's bytes)
-- Prints "result <ok> <errors> <wall s> <cpu s>" (and for mem "mem <rss0> <peak> <rss1> <lua_kb>"
-- in KB). A call counts as ok only when the provider layer mapped the answer to the expected
-- result (a redirect with its URL, a paid session, a transaction with its token).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local scenario, mode, base, amount, in_flight, cafile =
  arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]) or 1, arg[6]
if cafile == "" then cafile = nil end
local core = require "paykit.core"
local fixtures = require "bench.fixtures"

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a"); f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")), tonumber(s:match("VmHWM:%s*(%d+)"))
end

-- The call of each scenario: a function returning true when the answer mapped as expected.
local function setup()
  local call = require("bench.providers").make(scenario, base, cafile)
  if call then return call end
  if scenario == "bare" or scenario == "http" then
    -- The transport alone: the method, path, headers and body paykit sent for a Moka 3D start
    -- (captured), through paykit.core's client; libcurl adds Host and Content-Length itself.
    local f = assert(io.open("build/bench/moka-" .. (base:match("^https") and "https" or "http") .. ".req", "rb"))
    local raw = f:read("*a"); f:close()
    local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
    local method, path = head:match("^(%u+) (%S+)")
    local headers, ua = {}, nil
    for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do
      local l = name:lower()
      if l == "user-agent" then ua = value
      elseif l ~= "host" and l ~= "content-length" then headers[#headers + 1] = name .. ": " .. value end
    end
    local make = os.getenv("PAYKIT_TRANSPORT") == "wire" and core.wire_client or core.http_client
    local req = { method = method, url = base .. path, headers = headers, body = body }
    if scenario == "http" then
      local t = require("paykit.http").new { cafile = cafile, user_agent = ua, retry = false }
      return function()
        local res = t:request(req)
        return res ~= nil and res.status == 200 and res.body == fixtures.moka_answer
      end
    end
    local c = make { cafile = cafile, user_agent = ua }
    if mode == "core" then
      return function(n)
        local reqs = {}
        for i = 1, n or 1 do reqs[i] = req end
        local out, good = c:batch(reqs, { max_in_flight = in_flight }), 0
        for i = 1, n or 1 do
          if out[i].status == 200 and out[i].body == fixtures.moka_answer then good = good + 1 end
        end
        return good == (n or 1), good
      end
    end
    return function()
      local res = c:request(req)
      return res ~= nil and res.status == 200 and res.body == fixtures.moka_answer
    end
  end
  if scenario == "luasocket" then
    -- A hand-written HTTP/1.1 keep-alive loop in plain Lua over luasocket (luasec for https):
    -- the captured bytes of the Moka call out, the answer read by its Content-Length. What a
    -- plain socket client costs, next to libcurl.
    local socket = require "socket"
    local https = base:match("^https") ~= nil
    local f = assert(io.open("build/bench/moka-" .. (https and "https" or "http") .. ".req", "rb"))
    local raw = f:read("*a"); f:close()
    local host, port = base:match("^https?://([^:/]+):(%d+)")
    local sock = assert(socket.tcp())
    sock:setoption("tcp-nodelay", true)
    assert(sock:connect(host, tonumber(port)))
    if https then
      local ssl = require "ssl"
      sock = assert(ssl.wrap(sock, { mode = "client", protocol = "any", cafile = cafile, verify = "peer",
        options = { "all", "no_sslv2", "no_sslv3" } }))
      sock:sni(host)
      assert(sock:dohandshake())
    end
    return function()
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
      local body = len and sock:receive(len)
      return line:match("^HTTP/1%.1 200") ~= nil and body == fixtures.moka_answer
    end
  end
  error("unknown scenario " .. tostring(scenario))
end

local call = setup()
local ok, errors = 0, 0
local function count(good) if good then ok = ok + 1 else errors = errors + 1 end end

if mode == "batchonce" then
  count(require("paykit.batch")({ call }, { max_in_flight = 1 })[1])
  io.write(string.format("result %d %d 0 0\n", ok, errors))
  os.exit(0)
end
if mode == "once" then
  count(call())
  io.write(string.format("result %d %d 0 0\n", ok, errors))
  os.exit(0)
end

count(call()) -- warm-up, untimed: the connection (and TLS session) exists before the clock starts
ok, errors = 0, 0
local now = core.monotonic
local rss0
if mode == "mem" then collectgarbage("collect"); collectgarbage("collect"); rss0 = rss_kb() end
local t0, c0 = now(), os.clock()
if mode == "seq" then
  local stop = t0 + amount
  repeat
    for _ = 1, 50 do count(call()) end
  until now() >= stop
elseif mode == "count" then
  for _ = 1, amount do count(call()) end
elseif mode == "core" then
  local _, good = call(amount)
  ok, errors = good, amount - good
else
  local batch = require "paykit.batch"
  local tasks = {}
  for i = 1, amount do tasks[i] = call end
  local results = batch(tasks, { max_in_flight = in_flight, gc_pause = tonumber(os.getenv("PAYKIT_BENCH_GC_PAUSE") or "") })
  for i = 1, amount do count(results[i]) end
  tasks, results = nil, nil -- luacheck: ignore (dropped before the RSS after the batch is read)
end
local t1, c1 = now(), os.clock()
io.write(string.format("result %d %d %.6f %.6f\n", ok, errors, t1 - t0, c1 - c0))
if mode == "mem" then
  local _, peak = rss_kb()
  local lua_kb = collectgarbage("count")
  collectgarbage("collect"); collectgarbage("collect")
  local rss1 = rss_kb()
  io.write(string.format("mem %d %d %d %d\n", rss0, peak, rss1, math.floor(lua_kb)))
end
