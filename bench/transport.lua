-- paykit transport benchmark: paykit.core's libcurl client next to wrk and to the Lua HTTP
-- clients a user would otherwise pick from Debian, against one local nginx (1 worker).
-- Run from the repository root with lua5.4 (bench/run does that). Each run is bounded (a fixed
-- request count or wrk's 1 s). No thresholds: it prints what it measured.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local payload = dofile("bench/payload.lua")

local HTTP_PORT = tonumber(os.getenv("PAYKIT_BENCH_PORT") or 18760)
local HTTPS_PORT = HTTP_PORT + 1
local HTTP_URL = "http://127.0.0.1:" .. HTTP_PORT .. "/pay"
local HTTPS_URL = "https://127.0.0.1:" .. HTTPS_PORT .. "/pay"
local WRK_SECONDS = tonumber(os.getenv("PAYKIT_BENCH_WRK_SECONDS") or 1)
local ROOT = nginx.root()
local DIR = ROOT .. "/build/bench"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok and code == 0
end
local function have(cmd) return sh("command -v " .. cmd .. " >/dev/null 2>&1") end
local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1")); local out = p:read("*a"); p:close(); return out
end

local function make_certs()
  assert(sh("mkdir -p " .. q(DIR)))
  local ext = assert(io.open(DIR .. "/server.ext", "wb"))
  ext:write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  ext:close()
  local steps = {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=paykit bench CA' "
      .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
      .. "-keyout " .. q(DIR .. "/ca.key") .. " -out " .. q(DIR .. "/ca.crt"),
    "openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout " .. q(DIR .. "/server.key")
      .. " -out " .. q(DIR .. "/server.csr"),
    "openssl x509 -req -days 2 -in " .. q(DIR .. "/server.csr") .. " -CA " .. q(DIR .. "/ca.crt")
      .. " -CAkey " .. q(DIR .. "/ca.key") .. " -CAcreateserial -extfile " .. q(DIR .. "/server.ext")
      .. " -out " .. q(DIR .. "/server.crt"),
  }
  for _, cmd in ipairs(steps) do assert(sh(cmd .. " >/dev/null 2>&1"), "openssl failed: " .. cmd) end
end

local SERVER = [[
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_buffer_size 16k;
  ssl_session_cache shared:bench_ssl:1m;
  server {
    listen 127.0.0.1:${HTTP_PORT};
    listen 127.0.0.1:${HTTPS_PORT} ssl;
    ssl_certificate ${DIR}/server.crt;
    ssl_certificate_key ${DIR}/server.key;
    access_log off;
    location = /pay {
      default_type application/json;
      content_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        if not body or #body ~= ]] .. #payload.request .. [[ then ngx.status = 400; ngx.print("bad body"); return end
        ngx.print([==[]] .. payload.response .. [[]==])
      }
    }
  }
]]

-- One run of bench/client.lua in its own process.
local function client_run(lua, client, mode, url, n, in_flight, cafile)
  local cmd = table.concat({ lua, "bench/client.lua", client, mode, q(url), n, in_flight or 1, q(cafile or "") }, " ")
  local out = capture(cmd)
  local ok, errs, wall, cpu = out:match("result (%d+) (%d+) ([%d.]+) ([%d.]+)")
  if not ok then return { failed = out:gsub("%s+$", ""):sub(1, 200) } end
  ok, errs, wall, cpu = tonumber(ok), tonumber(errs), tonumber(wall), tonumber(cpu)
  return { rps = (ok + errs) / wall, cpu_us = cpu * 1e6 / (ok + errs), errors = errs, n = ok + errs }
end

-- wrk for WRK_SECONDS; its CPU time (user + system) from /usr/bin/time.
local function wrk_run(url, conns, threads)
  local tfile = DIR .. "/wrk-time.txt"
  local cmd = table.concat({ "/usr/bin/time -f '%U %S' -o", q(tfile), "wrk -t" .. threads, "-c" .. conns,
    "-d" .. WRK_SECONDS .. "s", "-s bench/wrk_post.lua", q(url) }, " ")
  local out = capture(cmd)
  local n = tonumber(out:match("(%d+) requests in"))
  local f = io.open(tfile); local t = f and f:read("*a") or ""; if f then f:close() end
  local u, s = t:match("([%d.]+) ([%d.]+)")
  if not n or not u then return { failed = out:gsub("%s+$", ""):sub(1, 200) } end
  local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
  local bad = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)") or 0)
  local sock = out:match("Socket errors: ([^\n]+)")
  return { rps = rps, cpu_us = (tonumber(u) + tonumber(s)) * 1e6 / n, errors = bad, n = n, note = sock }
end

-- Each figure is the median (by req/s) of REPEAT runs: this machine is small and shared.
local REPEAT = tonumber(os.getenv("PAYKIT_BENCH_REPEAT") or 3)
local function median(fn, ...)
  local runs = {}
  for i = 1, REPEAT do
    local r = fn(...)
    if r.failed then return r end
    runs[i] = r
  end
  table.sort(runs, function(a, b) return a.rps < b.rps end)
  return runs[math.floor((REPEAT + 1) / 2)]
end
local function client_med(...) return median(client_run, ...) end
local function wrk_med(...) return median(wrk_run, ...) end

local rows = {}
local function add(scenario, name, r, base)
  rows[#rows + 1] = { scenario = scenario, name = name, r = r, base = base }
end

local function fmt_row(row)
  local r, base = row.r, row.base
  if r.failed then
    return string.format("%-24s %-34s  not run: %s", row.scenario, row.name, r.failed)
  end
  local ratio, cpu_ratio = "", ""
  if base and not base.failed and r ~= base then
    ratio = string.format("%.2fx", r.rps / base.rps)
    cpu_ratio = string.format("%.2fx", r.cpu_us / base.cpu_us)
  elseif r == base then
    ratio, cpu_ratio = "1.00x", "1.00x"
  end
  local errs = r.errors > 0 and string.format("  (%d errors)", r.errors) or ""
  if r.note then errs = errs .. "  (socket errors: " .. r.note .. ")" end
  return string.format("%-24s %-34s %9.0f %8.1f %9s %9s %8d%s", row.scenario, row.name, r.rps, r.cpu_us,
    ratio, cpu_ratio, r.n, errs)
end

local function main()
  assert(have("wrk"), "wrk is not installed (make deps)")
  make_certs()
  local srv = nginx.start("bench", SERVER, { HTTP_PORT = HTTP_PORT, HTTPS_PORT = HTTPS_PORT, DIR = DIR,
    PORTS = { HTTP_PORT, HTTPS_PORT } })
  local ok, err = pcall(function()
    local ca = DIR .. "/ca.crt"
    local luacurl_lua = have("lua5.1") and "lua5.1" or nil

    io.stderr:write("bench: HTTP sequential\n")
    local w = wrk_med(HTTP_URL, 1, 1)
    add("HTTP, 1 connection", "wrk -t1 -c1", w, w)
    add("", "paykit request() lua5.4", client_med("lua5.4", "paykit", "seq", HTTP_URL, 5000), w)
    add("", "paykit request() luajit", client_med("luajit", "paykit", "seq", HTTP_URL, 5000), w)
    if luacurl_lua then
      add("", "lua-curl easy (lua5.1)", client_med(luacurl_lua, "luacurl", "seq", HTTP_URL, 5000), w)
    end
    add("", "socket.http lua5.4 (new conn each)", client_med("lua5.4", "luasocket", "seq", HTTP_URL, 2000), w)

    io.stderr:write("bench: HTTPS sequential\n")
    w = wrk_med(HTTPS_URL, 1, 1)
    add("HTTPS, 1 connection", "wrk -t1 -c1", w, w)
    add("", "paykit request() lua5.4", client_med("lua5.4", "paykit", "seq", HTTPS_URL, 5000, 1, ca), w)
    add("", "paykit request() luajit", client_med("luajit", "paykit", "seq", HTTPS_URL, 5000, 1, ca), w)
    if luacurl_lua then
      add("", "lua-curl easy (lua5.1)", client_med(luacurl_lua, "luacurl", "seq", HTTPS_URL, 5000, 1, ca), w)
    end
    add("", "ssl.https lua5.4 (handshake each)", client_med("lua5.4", "luasocket", "seq", HTTPS_URL, 60, 1, ca), w)

    for _, k in ipairs({ 16, 64 }) do
      io.stderr:write("bench: HTTP " .. k .. " in flight\n")
      w = wrk_med(HTTP_URL, k, 2)
      add("HTTP, " .. k .. " in flight", "wrk -t2 -c" .. k, w, w)
      add("", "paykit batch() lua5.4, 20000", client_med("lua5.4", "paykit", "batch", HTTP_URL, 20000, k), w)
      add("", "paykit batch() luajit, 20000", client_med("luajit", "paykit", "batch", HTTP_URL, 20000, k), w)
    end
    io.stderr:write("bench: HTTPS 64 in flight\n")
    w = wrk_med(HTTPS_URL, 64, 2)
    add("HTTPS, 64 in flight", "wrk -t2 -c64", w, w)
    add("", "paykit batch() lua5.4, 20000", client_med("lua5.4", "paykit", "batch", HTTPS_URL, 20000, 64, ca), w)
  end)
  srv:stop()
  if not ok then error(err, 0) end

  print(string.format("paykit transport benchmark: POST %d-byte JSON -> 200 with %d-byte JSON, nginx 1 worker on 127.0.0.1",
    #payload.request, #payload.response))
  print(string.format("%-24s %-34s %9s %8s %9s %9s %8s", "scenario", "client", "req/s", "CPU us", "req/s", "CPU",
    "requests"))
  print(string.format("%-24s %-34s %9s %8s %9s %9s %8s", "", "", "", "per req", "vs wrk", "vs wrk", ""))
  print(string.rep("-", 104))
  for _, row in ipairs(rows) do
    if row.scenario ~= "" and _ > 1 then print("") end
    print(fmt_row(row))
  end
  print(string.rep("-", 104))
  print("CPU us per req: the client process only (os.clock for Lua clients, /usr/bin/time for wrk), user+system.")
  print("Median of " .. REPEAT .. " runs each; wrk runs " .. WRK_SECONDS .. " s. Client and nginx share this machine's cores;")
  print("wrk -t2 takes two threads. No thresholds: figures only.")
end

main()
