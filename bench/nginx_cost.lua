-- In-nginx transport cost: the client nginx worker's CPU per call (os.clock, min and median of
-- interleaved rounds) of a raw cosocket loop, the pool's own cost, paykit.cosocket.request,
-- paykit.http and the whole provider call, all sending the captured request of
-- build/bench/<scenario>-nginx.req (made by `bench/run nginx`; when it is missing, this script
-- makes it: the server captures the first request paykit's provider call sends from the client
-- nginx, as bench/bench.lua does). Run under nsrun:
--   lua5.4 bench/nginx_cost.lua [scenario] [calls per round] [rounds] [modes]
-- (modes: a comma list of bench/nginx_cost_client.lua's, default all)
-- PAYKIT_COST_PORT: the first of the two ports (default 18846); PAYKIT_COST_CALLGRIND=1: instructions
-- per call instead, the client nginx run in one process under callgrind (slow: use a few hundred calls);
-- with PAYKIT_COST_DIFF=1 also per call of a 3n-call run minus the n-call run (without the
-- fixed set-up, warm-up and full collection each run pays)
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local F = require "bench.fixtures"
local scenario, n, rounds = arg[1] or "moka", tonumber(arg[2]) or 2000, tonumber(arg[3]) or 5
local modes = arg[4] or "raw,rawpool,pool,cosocket,http,paykit"
local P = tonumber(os.getenv("PAYKIT_COST_PORT") or 18846)
local ROOT = nginx.root()
local SERVER = [[
  lua_shared_dict bench_cap 1m;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_buffer_size 16k;
  server {
    listen 127.0.0.1:${PORT};
    access_log off;
    default_type application/json;
    location = ${MOKA} { content_by_lua_block { require("bench.nginx_server").answer("moka") } }
    location = ${MOCOPAY} { content_by_lua_block { require("bench.nginx_server").answer("mocopay") } }
    location = ${ZIPPY} { content_by_lua_block { require("bench.nginx_server").answer("zippy") } }
    location = /__capture { content_by_lua_block { require("bench.nginx_server").capture() } }
  }
]]
local CLIENT = [[
  keepalive_timeout 600s;
  lua_socket_keepalive_timeout 600s;
  server {
    listen 127.0.0.1:${CPORT};
    access_log off;
    location = /cost { content_by_lua_block { require("bench.nginx_cost_client").run("${ROOT}") } }
  }
]]
local srv = nginx.start("cost", SERVER, { PORT = P, MOKA = F.moka_path, MOCOPAY = F.mocopay_path, ZIPPY = F.zippy_path })
local function get(path)
  local p = io.popen(string.format("curl -s --max-time 590 'http://127.0.0.1:%d%s'", P + 1, path))
  local out = p:read("*a"); p:close(); return out
end
local function url(m, calls, r) return string.format("/cost?port=%d&n=%d&rounds=%d&scenario=%s&modes=%s", P, calls, r, scenario, m) end
-- build/bench/<scenario>-nginx.req: checked, or made by capturing the request of one paykit
-- call sent from the client nginx (the same way bench/bench.lua makes it)
local REQ = ROOT .. "/build/bench/" .. scenario .. "-nginx.req"
local function ensure_req()
  local f = io.open(REQ, "rb")
  if f then
    local size = #f:read("*a"); f:close()
    if size > 0 then return end
    error(REQ .. " is empty: remove it (this script then captures it again) or run bench/run nginx", 0)
  end
  local path = F[scenario .. "_path"]
  if not path then error("nginx_cost.lua: unknown scenario " .. tostring(scenario) .. " (moka, mocopay, zippy)", 0) end
  io.stderr:write("nginx_cost.lua: " .. REQ .. " missing: capturing paykit's request\n")
  local function cap(args)
    local p = io.popen(string.format("curl -s --max-time 60 'http://127.0.0.1:%d/__capture?%s'", P, args))
    local out = p:read("*a"); p:close(); return out
  end
  local key = P .. path
  cap("clear=" .. key); cap("arm=1")
  local out = get(url("paykit", 1, 1))
  cap("arm=0")
  local got = cap("key=" .. key)
  cap("clear=" .. key)
  if not out:find("^paykit ") or not got:find("^%u+ %S+ HTTP/1%.1\r\n") then
    error("nginx_cost.lua: could not capture " .. scenario .. "'s request inside nginx (client said: "
      .. tostring(out):sub(1, 200) .. "); run bench/run nginx to make " .. REQ, 0)
  end
  os.execute("mkdir -p '" .. ROOT .. "/build/bench'")
  f = assert(io.open(REQ, "wb")); f:write(got); f:close()
end
if os.getenv("PAYKIT_COST_CALLGRIND") then
  -- instructions per call: the client nginx in one process under callgrind; per mode, the
  -- counters are zeroed after a warm-up and dumped after n calls
  local c = nginx.start("cost-client", CLIENT, { CPORT = P + 1, ROOT = ROOT, PORT = P + 1 })
  local prefix = c.prefix
  local cok, cerr = pcall(ensure_req)
  c:stop()
  if not cok then srv:stop(); error(cerr, 0) end
  local conf = io.open(prefix .. "/nginx.conf"):read("*a"):gsub("daemon on;", "daemon off; master_process off;")
  local f = io.open(prefix .. "/cg.conf", "w"); f:write(conf); f:close()
  os.remove(prefix .. "/cg.out")
  local pidf = prefix .. "/cg.pid"
  os.execute(string.format("env -u LUA_PATH -u LUA_CPATH valgrind --tool=callgrind --smc-check=all-non-file --compress-strings=no --compress-pos=no "
    .. "--callgrind-out-file=%s/cg.out.%%p nginx -p %s -c %s/cg.conf >%s/cg.log 2>&1 & echo $! > %s", prefix, prefix, prefix, prefix, pidf))
  local vpid = io.open(pidf):read("*l")
  local diff = os.getenv("PAYKIT_COST_DIFF") -- also the (3n - n) / 2n difference
  for _ = 1, 300 do if get("/cost?port=" .. P .. "&n=1&rounds=1&modes=raw") ~= "" then break end; os.execute("sleep 0.2") end
  for m in modes:gmatch("[^,]+") do
    get(url(m, 300, 1))
    local function measure(calls)
      os.execute("callgrind_control -z " .. vpid .. " >/dev/null 2>&1")
      get(url(m, calls, 1))
      os.execute("callgrind_control -d " .. vpid .. " >/dev/null 2>&1")
      local last = io.popen("ls -t " .. prefix .. "/cg.out.* | head -1"):read("*l")
      return tonumber((io.open(last):read("*a"):match("\nsummary: (%d+)")))
    end
    local ir = measure(n)
    local line = ir and string.format("%.0f instructions per call", ir / n) or "?"
    if diff and ir then
      -- the same run with 3n calls, minus the n-call run: the set-up, warm-up and the full
      -- collection before each round cancel out
      local ir3 = measure(3 * n)
      line = line .. (ir3 and string.format("; %.0f (3n - n)", (ir3 - ir) / (2 * n)) or "")
    end
    print(string.format("%-9s %s", m, line))
  end
  os.execute("kill " .. vpid)
  srv:stop()
  return
end
local ok, cli = pcall(nginx.start, "cost-client", CLIENT, { CPORT = P + 1, ROOT = ROOT, PORT = P + 1 })
local why = not ok and cli
if ok then
  ok, why = pcall(ensure_req)
  if not ok then cli:stop() end
end
if ok then
  local load0 = io.open("/proc/loadavg"):read("*l")
  local out = get(url(modes, n, rounds))
  print(string.format("%s, %d calls x %d rounds, client worker CPU us per call (min, median); loadavg %s -> %s",
    scenario, n, rounds, load0, io.open("/proc/loadavg"):read("*l")))
  io.write(out)
  cli:stop()
end
srv:stop()
if not ok then error(why, 0) end
