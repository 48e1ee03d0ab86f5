-- The in-nginx half of the provider benchmark: runs in a second nginx (1 worker), the client,
-- against the benchmark's server nginx. GET /run?scenario=moka&mode=paykit|raw&seconds=1&port=P
--   paykit  the provider call through paykit (paykit.http -> paykit.cosocket), one after another
--   raw     a bare cosocket loop on one keep-alive connection sending the captured bytes of that
--           same call (build/bench/<scenario>-nginx.req) and reading the answer by Content-Length
--   rawpool the raw loop, taking the connection from nginx's pool and giving it back per call
--   cosocket  paykit.cosocket.request sending that captured request (method, target, headers in
--           their order, body): the transport alone
--   http    paykit.http:request (retry = false) sending it: the transport under paykit.http
-- Answers "result <ok> <errors> <wall s> <cpu s>" (CPU: this worker's, os.clock).
local M = {}

-- pooled: each call takes the connection from nginx's keep-alive pool (ngx.socket.tcp, connect)
-- and gives it back (setkeepalive), as a transport serving many requests must
local function raw_loop(raw, port, expect, pooled)
  local sock
  local function connect()
    sock = ngx.socket.tcp()
    sock:settimeout(10000)
    return sock:connect("127.0.0.1", port, { pool = "bench-raw" })
  end
  if not pooled then assert(connect()) end
  local function exchange()
    local sent, err = sock:send(raw)
    if not sent then return false, err end
    local line = sock:receive("*l")
    if not line then return false end
    local status = line:match("^HTTP/1%.1 (%d+)")
    local len
    while true do
      local h = sock:receive("*l")
      if not h then return false end
      if h == "" then break end
      local n = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
      if n then len = tonumber(n) end
    end
    if not len then return false end
    local body = sock:receive(len)
    return status == "200" and body == expect
  end
  if not pooled then return exchange, function() sock:close() end end
  return function()
    if not connect() then return false end
    local good = exchange()
    if good then sock:setkeepalive(600000, 32) else sock:close() end
    return good
  end
end

-- GET /breakdown?port=P&n=N[&scenario=moka|mocopay|zippy]: bench/split.lua's split of a
-- provider call through the cosocket transport (the split loads paykit's modules anew, so any
-- worker will do).
function M.breakdown()
  local args = ngx.req.get_uri_args()
  local scenario = args.scenario or "moka"
  local names = { moka = "Moka 3D start", mocopay = "MoCoPay verifyPayment", zippy = "Zippy create transaction" }
  local base = "http://127.0.0.1:" .. tonumber(args.port)
  ngx.print(require("bench.split").run {
    title = (names[scenario] or scenario) .. " inside nginx (cosocket transport), " .. base, n = tonumber(args.n) or 3000,
    make = function() return require("bench.providers").make(scenario, base) end,
  })
end

-- The captured request as paykit.cosocket / paykit.http take it: method, url, header lines, body.
local function captured_request(raw, port)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.1")
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local name = line:match("^([^:]+):")
    local l = name:lower()
    if l ~= "content-length" and l ~= "connection" and l ~= "host" then headers[#headers + 1] = line end
  end
  return { method = method, url = "http://127.0.0.1:" .. port .. target, headers = headers, body = body }
end

local function transport_loop(mode, raw, port, expect)
  local req = captured_request(raw, port)
  if mode == "cosocket" then
    local cosocket = require "paykit.cosocket"
    req.timeout, req.connect_timeout = 10000, 10000
    return function()
      local res = cosocket.request(req)
      return res ~= nil and res.status == 200 and res.body == expect
    end
  end
  local t = require("paykit.http").new { retry = false, correlation_header = false }
  return function()
    local res = t:request(req)
    return res ~= nil and res.status == 200 and res.body == expect
  end
end

-- GET /jprof?scenario=moka&mode=paykit&port=P&seconds=S: LuaJIT's sampling profiler
-- (jit.profile, the module under luajit -jp) over a loop of that mode's calls in this worker:
-- the share of samples by function (self) and by the two innermost frames.
-- The call of a mode: one() -> true when the answer was right; and done() for the end.
function M.make_one(root, scenario, mode, port)
  local fixtures = require "bench.fixtures"
  if mode == "raw" or mode == "rawpool" or mode == "cosocket" or mode == "http" then
    local f = assert(io.open(root .. "/build/bench/" .. scenario .. "-nginx.req", "rb"))
    local raw = f:read("*a"); f:close()
    if mode == "raw" or mode == "rawpool" then
      return raw_loop(raw, port, fixtures[scenario .. "_answer"], mode == "rawpool")
    end
    return transport_loop(mode, raw, port, fixtures[scenario .. "_answer"])
  end
  local call = require("bench.providers").make(scenario, "http://127.0.0.1:" .. port)
  return call -- (not the provider instance make gives second: the caller's second value is a finisher)
end

function M.jprof(root)
  local ok, profile = pcall(require, "jit.profile")
  if not ok then return ngx.say("jit.profile is not available: " .. tostring(profile)) end
  local args = ngx.req.get_uri_args()
  local one = M.make_one(root, args.scenario or "moka", args.mode or "paykit", tonumber(args.port))
  local self_n, pair_n, vm_n, file_n, total = {}, {}, {}, {}, 0
  profile.start("li1", function(thread, samples, vmstate)
    total = total + samples
    local top = profile.dumpstack(thread, "pl|f", 1)
    local two = profile.dumpstack(thread, "pl|f <", 2)
    self_n[top] = (self_n[top] or 0) + samples
    pair_n[two] = (pair_n[two] or 0) + samples
    vm_n[vmstate] = (vm_n[vmstate] or 0) + samples
    local file = top:match("^(.-):%d+|") or top
    file = file:gsub("^.*/lua/", ""):gsub("^.*/bench/", "bench/")
    file_n[file] = (file_n[file] or 0) + samples
  end)
  one()
  ngx.update_time()
  local stop = ngx.now() + (tonumber(args.seconds) or 3)
  local n = 0
  repeat
    for _ = 1, 50 do one(); n = n + 1 end
    ngx.update_time()
  until ngx.now() >= stop
  profile.stop()
  local function top(t, k)
    local list = {}
    for name, c in pairs(t) do list[#list + 1] = { name, c } end
    table.sort(list, function(a, b) return a[2] > b[2] end)
    local out = {}
    for i = 1, math.min(k, #list) do out[i] = string.format("%5.1f%%  %s", list[i][2] * 100 / total, list[i][1]) end
    return table.concat(out, "\n")
  end
  ngx.say(string.format("%d calls, %d samples (1 ms of CPU); vm states (N native, I interpreted, C C code, G GC, J compiler):", n, total))
  ngx.say(top(vm_n, 10))
  ngx.say("self, by file:")
  ngx.say(top(file_n, 25))
  ngx.say("self, by line:")
  ngx.say(top(self_n, 40))
  ngx.say("by caller < function:")
  ngx.say(top(pair_n, 40))
end

function M.run(root)
  local args = ngx.req.get_uri_args()
  local scenario, mode = args.scenario, args.mode
  local seconds, port = tonumber(args.seconds) or 1, tonumber(args.port)
  local one, done = M.make_one(root, scenario, mode, port)
  local ok, errors = 0, 0
  local function count(good) if good then ok = ok + 1 else errors = errors + 1 end end
  if args.once then -- the capture run: one call
    local good = one()
    ngx.say(string.format("result %d %d 0 0", good and 1 or 0, good and 0 or 1))
    return
  end
  one() -- warm-up: the connection exists before the clock starts
  ngx.update_time()
  local t0, c0 = ngx.now(), os.clock()
  local stop = t0 + seconds
  repeat
    for _ = 1, 50 do count(one()) end
    ngx.update_time()
  until ngx.now() >= stop
  local t1, c1 = ngx.now(), os.clock()
  if done then done() end
  ngx.say(string.format("result %d %d %.6f %.6f", ok, errors, t1 - t0, c1 - c0))
end

return M
