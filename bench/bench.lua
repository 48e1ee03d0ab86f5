-- paykit provider benchmark (make bench): the whole provider call (validate, build the body,
-- sign, send, parse, map the result) next to wrk -t1 sending the identical bytes to the same
-- local nginx (1 worker, started here on 127.0.0.1), on Lua 5.4 and LuaJIT, over http and https,
-- for Moka 3D start, MoCoPay verifyPayment and Zippy create transaction; 64 in flight through
-- paykit.batch next to wrk -t1 -c64 (each provider, http); inside nginx a provider call next to
-- a raw cosocket loop sending the same bytes; paykit.batch memory per queued task and RSS after
-- a large batch. The Moka call is also run against answers whose heads are never alike (a new
-- X-Request-Id on each, as a provider that tags its answers sends): the rows "every answer head
-- new", paykit's worst case for the header strings and heads it keeps. Every rate is the median of REPEAT runs (interleaved: one run of every row,
-- then the next round), with its spread, the client's CPU per call and the server's CPU per
-- request; loadavg before and after, and a warning when the machine was busy. No thresholds:
-- it prints (and stores in build/bench/results.txt) what it measured.
-- The same bytes: the server captures the first request paykit sends for each provider and
-- scheme (raw header + body); wrk sends that file (bench/wrk_raw.lua), and the report says
-- whether wrk's own first request, LuaJIT's and a paykit.batch task's (default and wire
-- transport) were captured byte for byte the same.
--
-- Environment: BENCH_QUICK=1 (a smoke run: the Moka rows only, a 2k-task batch, a 10k-task
-- memory batch), PAYKIT_BENCH_REPEAT (default 3, at least 3), PAYKIT_BENCH_SECONDS (default 1;
-- whole seconds: wrk takes no fractions),
-- PAYKIT_BENCH_PORT (default 18760; uses it and the next four).
-- Run from the repository root with lua5.4 (bench/run does that).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local F = require "bench.fixtures"

local QUICK = os.getenv("BENCH_QUICK") == "1"
-- bench/run nginx: only the in-nginx rows (the raw cosocket loop next to paykit's cosocket
-- transport, all three providers)
local NGINX_ONLY = arg[1] == "nginx"
-- bench/run batch: only the 64-in-flight rows and the paykit.batch memory
local BATCH_ONLY = arg[1] == "batch"
local REPEAT = math.max(3, tonumber(os.getenv("PAYKIT_BENCH_REPEAT") or 3))
local SECONDS = math.max(1, math.floor(tonumber(os.getenv("PAYKIT_BENCH_SECONDS") or 1)))
local BATCH_N = QUICK and 2000 or 10000
local MEM_N = QUICK and 10000 or 100000
local P = tonumber(os.getenv("PAYKIT_BENCH_PORT") or 18760)
local PORT = { http = P, https = P + 1, nginx = P + 2, client = P + 3, fresh = P + 4 }
local ROOT = nginx.root()
local DIR = ROOT .. "/build/bench"
local CA = DIR .. "/ca.crt"
local NCPU = 2

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok and code == 0
end
local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1")); local out = p:read("*a"); p:close(); return out
end
local function readfile(path)
  local f = io.open(path, "rb"); if not f then return nil end
  local s = f:read("*a"); f:close(); return s
end
local function writefile(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end
local function loadavg() return (readfile("/proc/loadavg") or "?"):match("^(%S+ %S+ %S+)") end
local function log(s) io.stderr:write("bench: " .. s .. "\n") end

local function make_certs()
  assert(sh("mkdir -p " .. q(DIR)))
  if readfile(DIR .. "/server.crt") and readfile(CA) then return end
  writefile(DIR .. "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  local steps = {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=paykit bench CA' "
      .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
      .. "-keyout " .. q(DIR .. "/ca.key") .. " -out " .. q(CA),
    "openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout " .. q(DIR .. "/server.key")
      .. " -out " .. q(DIR .. "/server.csr"),
    "openssl x509 -req -days 2 -in " .. q(DIR .. "/server.csr") .. " -CA " .. q(CA)
      .. " -CAkey " .. q(DIR .. "/ca.key") .. " -CAcreateserial -extfile " .. q(DIR .. "/server.ext")
      .. " -out " .. q(DIR .. "/server.crt"),
  }
  for _, cmd in ipairs(steps) do assert(sh(cmd .. " >/dev/null 2>&1"), "openssl failed: " .. cmd) end
end

local SERVER = [[
  lua_shared_dict bench_cap 1m;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_buffer_size 16k;
  ssl_session_cache shared:bench_ssl:1m;
  server {
    listen 127.0.0.1:${HTTP_PORT};
    listen 127.0.0.1:${HTTPS_PORT} ssl;
    listen 127.0.0.1:${NGINX_PORT};
    ssl_certificate ${DIR}/server.crt;
    ssl_certificate_key ${DIR}/server.key;
    access_log off;
    default_type application/json;
    location = ${MOKA} { content_by_lua_block { require("bench.nginx_server").answer("moka") } }
    location = ${MOCOPAY} { content_by_lua_block { require("bench.nginx_server").answer("mocopay") } }
    location = ${ZIPPY} { content_by_lua_block { require("bench.nginx_server").answer("zippy") } }
    location = /__capture { content_by_lua_block { require("bench.nginx_server").capture() } }
  }
  # the same answers, each with a new X-Request-Id: no two heads alike, as from a provider that
  # tags every answer (the rows "every answer head new")
  server {
    listen 127.0.0.1:${FRESH_PORT};
    access_log off;
    default_type application/json;
    location = ${MOKA} { content_by_lua_block { require("bench.nginx_server").answer("moka", true) } }
  }
]]

local CLIENT = [[
  keepalive_timeout 600s;
  lua_socket_keepalive_timeout 600s;
  server {
    listen 127.0.0.1:${CLIENT_PORT};
    access_log off;
    location = /run { content_by_lua_block { require("bench.nginx_client").run("${ROOT}") } }
    location = /jprof { content_by_lua_block { require("bench.nginx_client").jprof("${ROOT}") } }
    location = /breakdown { content_by_lua_block { require("bench.nginx_client").breakdown() } }
  }
]]

-- CPU seconds (user + system) of the server's worker process so far.
local server_worker
local function worker_of(srv)
  local master = srv:pid()
  local kids = readfile("/proc/" .. master .. "/task/" .. master .. "/children") or ""
  return tonumber(kids:match("(%d+)"))
end
local function proc_cpu(pid)
  local s = readfile("/proc/" .. pid .. "/stat") or ""
  local rest = s:match("%) (.*)$") or ""
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- after "pid (comm) ": state is field 3, utime 14, stime 15 -> indexes 12, 13 here
  return ((tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)) / 100
end

local function curl_get(url, out)
  if out then os.remove(out) end
  return capture("curl -sf --max-time 120 " .. (out and ("-o " .. q(out) .. " ") or "") .. q(url))
end

-- Runs fn (which returns {n=, wall=, cpu=, errors=} or {failed=}) and adds the server's CPU.
local function with_server_cpu(fn)
  local s0 = proc_cpu(server_worker)
  local r = fn()
  local s1 = proc_cpu(server_worker)
  if not r.failed and r.n > 0 then r.server_us = (s1 - s0) * 1e6 / r.n end
  return r
end

local function parse_result(out)
  local ok, errs, wall, cpu = out:match("result (%d+) (%d+) ([%d.]+) ([%d.]+)")
  if not ok then return { failed = out:gsub("%s+$", ""):gsub("\n", " | "):sub(1, 160) } end
  ok, errs, wall, cpu = tonumber(ok), tonumber(errs), tonumber(wall), tonumber(cpu)
  local n = ok + errs
  return { n = n, errors = errs, rps = n / wall, cpu_us = cpu * 1e6 / n }
end

local function calls_run(lua, scenario, mode, base, amount, in_flight, cafile)
  return with_server_cpu(function()
    local out = capture(table.concat({ lua, "bench/calls.lua", scenario, mode, q(base), amount, in_flight or 1,
      q(cafile or "") }, " "))
    local r = parse_result(out)
    local a, b, c, d = out:match("mem (%d+) (%d+) (%d+) (%d+)")
    if a then r.mem = { rss0 = tonumber(a), peak = tonumber(b), rss1 = tonumber(c), lua_kb = tonumber(d) } end
    return r
  end)
end

local function nginx_run(scenario, mode, port)
  return with_server_cpu(function()
    return parse_result(curl_get(string.format("http://127.0.0.1:%d/run?scenario=%s&mode=%s&seconds=%s&port=%d",
      PORT.client, scenario, mode, SECONDS, port or PORT.nginx)))
  end)
end

-- bench/cloop.c: a plain C keep-alive loop sending the same bytes (the fast transport's floor).
local CLOOP = DIR .. "/cloop"
local function build_cloop()
  return sh("cc -O2 -o " .. q(CLOOP) .. " bench/cloop.c -lssl -lcrypto -lhttp_parser >/dev/null 2>&1")
end
local function cloop_run(reqfile, scheme, cafile)
  return with_server_cpu(function()
    writefile(DIR .. "/moka.answer", F.moka_answer)
    return parse_result(capture(table.concat({ q(CLOOP), "127.0.0.1", PORT[scheme], q(reqfile), q(DIR .. "/moka.answer"),
      SECONDS, scheme == "https" and q(cafile) or "" }, " ")))
  end)
end

local function wrk_run(reqfile, url, conns)
  return with_server_cpu(function()
    local tfile = DIR .. "/wrk-time.txt"
    local out = capture(table.concat({ "/usr/bin/time -f '%U %S' -o", q(tfile), "wrk -t1", "-c" .. conns,
      "-d" .. SECONDS .. "s", "-s bench/wrk_raw.lua", q(url), "--", q(reqfile) }, " "))
    local n = tonumber(out:match("(%d+) requests in"))
    local u, s = (readfile(tfile) or ""):match("([%d.]+) ([%d.]+)")
    local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
    if not n or not u or not rps then return { failed = out:gsub("%s+$", ""):gsub("\n", " | "):sub(1, 160) } end
    local bad = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)") or 0)
    local sock = out:match("Socket errors: ([^\n]+)")
    return { rps = rps, cpu_us = (tonumber(u) + tonumber(s)) * 1e6 / n, errors = bad, n = n, note = sock }
  end)
end

-- paykit.http's transport through PAYKIT_TRANSPORT (the default is wire; CURL: libcurl), and
-- for the bare rows the core client bench/calls.lua makes (WIRE: core.wire_client)
local WIRE = "PAYKIT_TRANSPORT=wire "
local CURL = "PAYKIT_TRANSPORT=curl "

-- ------------------------------------------------------------------ capture: the identical bytes
local captured = {} -- name -> note about the bytes

local function cap_url(args) return "http://127.0.0.1:" .. PORT.http .. "/__capture?" .. args end
local function grab(key, file)
  local ok = curl_get(cap_url("key=" .. key), file) == "" and readfile(file)
  curl_get(cap_url("clear=" .. key))
  return ok or nil
end

-- How the request b compares with a: "the same bytes", or what differs. paykit sends a new
-- X-Correlation-Id on every call, and its header lines come from a Lua table (their order may
-- differ between processes and runtimes); anything else is "OTHER".
local function compare(a, b)
  if not b then return "not captured" end
  if a == b then return "the same bytes" end
  local function parts(r)
    local head, body = r:match("^(.-\r\n)\r\n(.*)$")
    if not head then return nil end
    local line, rest = head:match("^([^\r\n]*)\r\n(.*)$")
    local hs, id = {}, nil
    for h in (rest or ""):gmatch("([^\r\n]*)\r\n") do
      if h:lower():match("^x%-correlation%-id:") then id, h = h, "X-Correlation-Id: *" end
      hs[#hs + 1] = h
    end
    return line, hs, body, id
  end
  local la, ha, ba, ida = parts(a)
  local lb, hb, bb, idb = parts(b)
  if not la or not lb then return "OTHER bytes (" .. #b .. ")" end
  local ordered = table.concat(ha, "\n") == table.concat(hb, "\n")
  table.sort(ha); table.sort(hb)
  if la ~= lb or ba ~= bb or table.concat(ha, "\n") ~= table.concat(hb, "\n") then return "OTHER bytes (" .. #b .. ")" end
  local notes = {}
  if ida ~= idb then notes[#notes + 1] = "its own X-Correlation-Id" end
  if not ordered then notes[#notes + 1] = "the headers in another order" end
  return "the same bytes but " .. table.concat(notes, " and ")
end

-- What wrk really sends with bench/wrk_raw.lua and the file: its first request, captured by the
-- server as paykit's was, next to the file's bytes.
local function wrk_bytes(file, base, key)
  curl_get(cap_url("clear=" .. key))
  capture(table.concat({ "wrk -t1 -c1 -d1s -s bench/wrk_raw.lua", q(base .. "/"), "--", q(file) }, " "))
  local got = grab(key, DIR .. "/wrk.req")
  if not got then return "wrk's request was NOT captured" end
  return "wrk sends " .. compare(readfile(file), got)
end

-- The fresh port's promise, checked: two answers there, two different X-Request-Id values.
local function fresh_heads()
  local url = q("http://127.0.0.1:" .. PORT.fresh .. F.moka_path)
  local ids = {}
  for i = 1, 2 do
    ids[i] = capture("curl -s -o /dev/null -D - -X POST --data x --max-time 10 " .. url):match("[Xx]%-[Rr]equest%-[Ii]d: *(%x+)")
  end
  if not ids[1] or ids[1] == ids[2] then error("the answers on port " .. PORT.fresh .. " do not carry a new X-Request-Id each", 0) end
  captured.fresh = "two answers there carried X-Request-Id " .. ids[1] .. " and " .. ids[2]
end

local function captures()
  fresh_heads()
  curl_get(cap_url("arm=1"))
  local paths = { moka = F.moka_path, mocopay = F.mocopay_path, zippy = F.zippy_path }
  for _, prov in ipairs(QUICK and { "moka" } or { "moka", "mocopay", "zippy" }) do -- the measured ones
    for _, scheme in ipairs(NGINX_ONLY and {} or { "http", "https" }) do
      local base = scheme .. "://127.0.0.1:" .. PORT[scheme]
      local key = PORT[scheme] .. paths[prov]
      local file = string.format("%s/%s-%s.req", DIR, prov, scheme)
      local r = parse_result(capture(table.concat({ "lua5.4 bench/calls.lua", prov, "once", q(base), 1, 1, q(CA) }, " ")))
      local a = grab(key, file)
      if r.failed or r.errors > 0 or not a then error("capture of " .. prov .. " over " .. scheme .. " failed: " .. tostring(r.failed)
        .. (r.errors and (", " .. r.errors .. " call(s) not mapped as expected") or "") .. (a and "" or ", no bytes captured"), 0) end
      parse_result(capture(table.concat({ "luajit bench/calls.lua", prov, "once", q(base), 1, 1, q(CA) }, " ")))
      local b = grab(key, DIR .. "/luajit.req")
      captured[prov .. "-" .. scheme] = "LuaJIT sends " .. compare(a, b)
      captured[prov .. "-" .. scheme .. "-len"] = #a
      captured[prov .. "-" .. scheme .. "-wrk"] = wrk_bytes(file, base, key)
      if scheme == "http" then -- the 64-in-flight rows: a paykit.batch task's bytes
        local notes = {}
        for _, env in ipairs { "", WIRE } do
          parse_result(capture(table.concat({ env .. "lua5.4 bench/calls.lua", prov, "batchonce", q(base), 1, 1, q(CA) }, " ")))
          local c = grab(key, DIR .. "/batch.req")
          notes[#notes + 1] = (env == "" and "default" or "wire") .. " transport: " .. compare(a, c)
        end
        captured[prov .. "-batch"] = "a paykit.batch task sends, " .. table.concat(notes, "; ")
      end
    end
    local file = string.format("%s/%s-nginx.req", DIR, prov)
    local out = curl_get(string.format("http://127.0.0.1:%d/run?scenario=%s&mode=paykit&once=1&port=%d",
      PORT.client, prov, PORT.nginx))
    local r = parse_result(out)
    if r.failed or r.errors > 0 or not grab(PORT.nginx .. paths[prov], file) then
      error("capture of " .. prov .. " inside nginx failed: " .. tostring(r.failed or out), 0)
    end
  end
  -- the bare transport's bytes next to the whole call's
  if NGINX_ONLY then curl_get(cap_url("arm=0")); return end
  parse_result(capture("lua5.4 bench/calls.lua bare once " .. q("http://127.0.0.1:" .. PORT.http) .. " 1 1"))
  local b = grab(PORT.http .. F.moka_path, DIR .. "/bare.req")
  captured.bare = compare(readfile(DIR .. "/moka-http.req"), b) .. " as the Moka call"
  curl_get(cap_url("arm=0"))
end

-- ------------------------------------------------------------------ the rows
local rows = {}
local function row(group, name, run, base) rows[#rows + 1] = { group = group, name = name, run = run, base = base, runs = {} } end

-- the memory batches: each runtime over libcurl and over the wire transport
local MEM_RUNS = { "lua5.4", "luajit", "lua5.4 wire", "luajit wire", "luajit gc_pause=100" }
local MEM_ENV = { ["lua5.4 wire"] = WIRE, ["luajit wire"] = WIRE, ["luajit gc_pause=100"] = "PAYKIT_BENCH_GC_PAUSE=100 " }

local function build_rows()
  local names = { moka = "Moka 3D start", mocopay = "MoCoPay verifyPayment", zippy = "Zippy create transaction" }
  local runtimes = { { "lua5.4", "Lua 5.4" }, { "luajit", "LuaJIT" } }
  local provs = QUICK and { "moka" } or { "moka", "mocopay", "zippy" }
  for _, prov in ipairs((NGINX_ONLY or BATCH_ONLY) and {} or provs) do
    for _, scheme in ipairs { "http", "https" } do
      local base = scheme .. "://127.0.0.1:" .. PORT[scheme]
      local file = string.format("%s/%s-%s.req", DIR, prov, scheme)
      local group = string.format("%s, %s, 1 conn (%d B req)", names[prov], scheme, captured[prov .. "-" .. scheme .. "-len"])
      local w = #rows + 1
      row(group, "wrk -t1 -c1 (same bytes)", function() return wrk_run(file, base .. "/", 1) end)
      for _, rt in ipairs(runtimes) do
        -- the default transport (wire), and libcurl (transport = "curl")
        row(group, "paykit " .. rt[2], function() return calls_run(rt[1], prov, "seq", base, SECONDS, 1, CA) end, w)
        row(group, "paykit " .. rt[2] .. ", libcurl transport", function()
          return calls_run(CURL .. rt[1], prov, "seq", base, SECONDS, 1, CA) end, w)
      end
      if prov == "moka" then
        for _, rt in ipairs(runtimes) do
          row(group, "bare core request() " .. rt[2], function() return calls_run(rt[1], "bare", "seq", base, SECONDS, 1, CA) end, w)
          row(group, "bare wire request() " .. rt[2], function()
            return calls_run(WIRE .. rt[1], "bare", "seq", base, SECONDS, 1, CA) end, w)
        end
        row(group, "plain Lua loop over luasocket, Lua 5.4", function()
          return calls_run("lua5.4", "luasocket", "seq", base, SECONDS, 1, CA) end, w)
        if build_cloop() then
          row(group, "plain C loop (bench/cloop.c)", function() return cloop_run(file, scheme, CA) end, w)
        end
      end
    end
    if prov == "moka" then
      -- the same call where no two answer heads are alike (a new X-Request-Id on each): what
      -- paykit's kept header strings and kept heads cost when they never match
      local fresh = "http://127.0.0.1:" .. PORT.fresh
      local group = names[prov] .. ", http, 1 conn, every answer head new"
      local w = #rows + 1
      row(group, "wrk -t1 -c1 (same bytes)", function()
        return wrk_run(string.format("%s/%s-http.req", DIR, prov), fresh .. "/", 1) end)
      for _, rt in ipairs(runtimes) do
        row(group, "paykit " .. rt[2], function() return calls_run(rt[1], prov, "seq", fresh, SECONDS, 1, CA) end, w)
        row(group, "bare wire request() " .. rt[2], function()
          return calls_run(WIRE .. rt[1], "bare", "seq", fresh, SECONDS, 1, CA) end, w)
      end
    end
  end
  local base = "http://127.0.0.1:" .. PORT.http
  for _, prov in ipairs(NGINX_ONLY and {} or provs) do
    local group = names[prov] .. ", http, 64 in flight"
    local w = #rows + 1
    row(group, "wrk -t1 -c64 (same bytes)", function() return wrk_run(DIR .. "/" .. prov .. "-http.req", base .. "/", 64) end)
    for _, rt in ipairs(runtimes) do
      row(group, "paykit.batch " .. rt[2] .. ", " .. BATCH_N .. " tasks", function()
        return calls_run(rt[1], prov, "batch", base, BATCH_N, 64, CA) end, w)
      row(group, "paykit.batch " .. rt[2] .. ", wire transport", function()
        return calls_run(WIRE .. rt[1], prov, "batch", base, BATCH_N, 64, CA) end, w)
    end
    if prov == "moka" then
      -- where the time goes: the same request without the provider layer (a paykit.http
      -- transport in paykit.batch tasks), and the core clients' own batch() (no Lua per request)
      for _, rt in ipairs(runtimes) do
        row(group, "transport only: paykit.http in batch " .. rt[2], function()
          return calls_run(rt[1], "http", "batch", base, BATCH_N, 64, CA) end, w)
        row(group, "transport only: wire paykit.http in batch " .. rt[2], function()
          return calls_run(WIRE .. rt[1], "http", "batch", base, BATCH_N, 64, CA) end, w)
      end
      row(group, "core http_client:batch() (libcurl multi)", function()
        return calls_run("lua5.4", "bare", "core", base, BATCH_N, 64, CA) end, w)
      row(group, "core wire_client:batch() (epoll)", function()
        return calls_run(WIRE .. "lua5.4", "bare", "core", base, BATCH_N, 64, CA) end, w)
    end
  end
  for _, prov in ipairs(BATCH_ONLY and {} or provs) do
    local g = "inside nginx: " .. names[prov] .. ", http"
    local r = #rows + 1
    if NGINX_ONLY and os.getenv("PAYKIT_BENCH_MODE") then -- one mode only (for perf on the client worker)
      local m = os.getenv("PAYKIT_BENCH_MODE")
      row(g, m, function() return nginx_run(prov, m) end)
      goto next_prov
    end
    row(g, "raw cosocket loop (same bytes)", function() return nginx_run(prov, "raw") end)
    row(g, "paykit (cosocket transport)", function() return nginx_run(prov, "paykit") end, r)
    if prov == "moka" then -- as above, where no two answer heads are alike
      local g2 = g .. ", every answer head new"
      local r2 = #rows + 1
      row(g2, "raw cosocket loop (same bytes)", function() return nginx_run(prov, "raw", PORT.fresh) end)
      row(g2, "paykit (cosocket transport)", function() return nginx_run(prov, "paykit", PORT.fresh) end, r2)
    end
    if NGINX_ONLY then -- the transport alone, and under paykit.http, sending the same request
      row(g, "raw loop, pooled (connect+setkeepalive)", function() return nginx_run(prov, "rawpool") end, r)
      row(g, "paykit.cosocket.request alone", function() return nginx_run(prov, "cosocket") end, r)
      row(g, "paykit.http:request (cosocket)", function() return nginx_run(prov, "http") end, r)
    end
    ::next_prov::
  end
end

local function median_of(runs)
  local ok = {}
  for _, r in ipairs(runs) do if not r.failed then ok[#ok + 1] = r end end
  if #ok == 0 then return runs[1] end
  table.sort(ok, function(a, b) return a.rps < b.rps end)
  local m = ok[math.floor((#ok + 1) / 2)]
  m.spread = (ok[#ok].rps - ok[1].rps) / m.rps * 100
  m.count = #ok
  return m
end

local function fmt(row_, lines)
  local r = row_.med
  if r.failed then
    lines[#lines + 1] = string.format("  %-40s not run: %s", row_.name, r.failed)
    return
  end
  local ratio = "1.00x"
  if row_.base then
    local b = rows[row_.base].med
    ratio = (b and not b.failed) and string.format("%.2fx", r.rps / b.rps) or "?"
  end
  local extra = r.errors > 0 and string.format("  (%d errors)", r.errors) or ""
  if r.note then extra = extra .. "  (socket errors: " .. r.note .. ")" end
  lines[#lines + 1] = string.format("  %-40s %9.0f %6.1f%% %7s %9.1f %9s%s", row_.name, r.rps, r.spread or 0, ratio,
    r.cpu_us, r.server_us and string.format("%.1f", r.server_us) or "?", extra)
end

local function main()
  assert(sh("command -v wrk >/dev/null 2>&1"), "wrk is not installed (make deps)")
  local load0 = loadavg()
  make_certs()
  local vars = { HTTP_PORT = PORT.http, HTTPS_PORT = PORT.https, NGINX_PORT = PORT.nginx, CLIENT_PORT = PORT.client,
    FRESH_PORT = PORT.fresh, DIR = DIR, MOKA = F.moka_path, MOCOPAY = F.mocopay_path, ZIPPY = F.zippy_path }
  local sv = {}; for k, v in pairs(vars) do sv[k] = v end; sv.PORTS = { PORT.http, PORT.https, PORT.nginx, PORT.fresh }
  local srv = nginx.start("bench", SERVER, sv)
  local cv = {}; for k, v in pairs(vars) do cv[k] = v end; cv.PORTS = { PORT.client }
  local cli_ok, cli = pcall(nginx.start, "bench-client", CLIENT, cv)
  local mem = {}
  local ok, err = pcall(function()
    if not cli_ok then error(cli, 0) end
    server_worker = assert(worker_of(srv), "no nginx worker")
    log("capturing the request bytes paykit sends")
    captures()
    local jp = os.getenv("PAYKIT_BENCH_JPROF") -- "moka:paykit": jit.profile of that loop inside nginx, then stop
    if NGINX_ONLY and jp then
      local sc, md = jp:match("^(%w+):(%w+)$")
      io.write(curl_get(string.format("http://127.0.0.1:%d/jprof?scenario=%s&mode=%s&port=%d&seconds=8", PORT.client, sc, md, PORT.nginx)))
      error("(jit.profile only)", 0)
    end
    build_rows()
    for round = 1, REPEAT do
      log(string.format("round %d of %d (%d rows), loadavg %s", round, REPEAT, #rows, loadavg()))
      for _, r in ipairs(rows) do r.runs[round] = r.run() end
    end
    for _, rt in ipairs(NGINX_ONLY and {} or MEM_RUNS) do
      log("memory: " .. MEM_N .. "-task batch on " .. rt)
      mem[rt] = calls_run((MEM_ENV[rt] or "") .. rt:match("^%S+"), "moka", "mem",
        "http://127.0.0.1:" .. PORT.http, MEM_N, 64, CA)
    end
  end)
  if cli_ok then cli:stop() end
  srv:stop()
  if not ok then error(err, 0) end
  local load1 = loadavg()

  local lines = {}
  local function p(s) lines[#lines + 1] = s or "" end
  p(string.format("paykit provider benchmark%s: nginx 1 worker on 127.0.0.1, %s s runs, median of %d interleaved rounds",
    QUICK and " (BENCH_QUICK smoke run)" or "", SECONDS, REPEAT))
  p(string.format("%s; loadavg before %s, after %s; %d cores shared by client and server",
    os.date("!%Y-%m-%d %H:%M UTC"), load0, load1, NCPU))
  p()
  p(string.format("  %-40s %9s %7s %7s %9s %9s", "client", "calls/s", "spread", "vs base", "client", "server"))
  p(string.format("  %-40s %9s %7s %7s %9s %9s", "", "median", "", "", "CPU us", "CPU us"))
  local worst_spread = 0
  local group
  for _, r in ipairs(rows) do
    r.med = median_of(r.runs)
    if r.med.spread and r.med.spread > worst_spread then worst_spread = r.med.spread end
    if r.group ~= group then group = r.group; p(); p(group) end
    fmt(r, lines)
  end
  p()
  if not NGINX_ONLY then
    p("paykit.batch memory (Moka 3D start tasks, http, 64 in flight), KB; goals: <= 2 KB per queued task,")
    p("RSS after the batch within 5 MB (5120 KB) of before:")
  end
  for _, rt in ipairs(NGINX_ONLY and {} or MEM_RUNS) do
    local m = mem[rt]
    if m and m.mem then
      p(string.format("  %-20s %6d tasks: RSS before %7d, peak %7d (+%d = %.2f KB/task), after %7d (%+d); %.0f calls/s, %.1f us CPU/call",
        rt, MEM_N, m.mem.rss0, m.mem.peak, m.mem.peak - m.mem.rss0, (m.mem.peak - m.mem.rss0) / MEM_N, m.mem.rss1,
        m.mem.rss1 - m.mem.rss0, m.rps or 0, m.cpu_us or 0))
    else
      p("  " .. rt .. ": not run: " .. tostring(m and m.failed))
    end
  end
  p()
  p("Identical bytes: each wrk row sends the request paykit sent (captured by the server: raw header + body);")
  p("paykit sends a new X-Correlation-Id (same length) on every call, wrk the captured one every time.")
  for _, k in ipairs(NGINX_ONLY and {} or { "moka-http", "moka-https", "mocopay-http", "mocopay-https", "zippy-http", "zippy-https" }) do
    if captured[k .. "-len"] or not QUICK then
      p(string.format("  %-14s %d bytes; %s; %s", k, captured[k .. "-len"] or 0, tostring(captured[k] or "not captured"),
        tostring(captured[k .. "-wrk"] or "wrk not checked")))
      local prov = k:match("^(%w+)%-http$")
      if prov and captured[prov .. "-batch"] then p(string.format("  %-14s %s", "", captured[prov .. "-batch"])) end
    end
  end
  if not NGINX_ONLY then p("  bare core request(): " .. tostring(captured.bare)) end
  p("  every answer head new (port " .. PORT.fresh .. "): " .. tostring(captured.fresh))
  p("vs base: the group's first row (wrk -t1 or the raw cosocket loop). client CPU: user+system of the client")
  p("process per call (os.clock; /usr/bin/time for wrk; the client nginx worker inside nginx). server CPU:")
  p("the server nginx worker's user+system per request (/proc, 10 ms ticks). spread: (max-min)/median.")
  local l0 = math.max(tonumber(load0:match("^(%S+)")) or 0, tonumber(load1:match("^(%S+)")) or 0)
  if l0 > 0.5 * NCPU or worst_spread > 20 then
    p(string.format("WARNING: the machine was busy (loadavg before %s, after %s; worst spread %.0f%%): figures are noisy.",
      load0, load1, worst_spread))
  end
  local text = table.concat(lines, "\n") .. "\n"
  local out = NGINX_ONLY and "/results-nginx.txt" or "/results.txt"
  writefile(DIR .. out, text)
  io.write(text)
  io.write("(stored in build/bench" .. out .. ")\n")
end

-- bench/run profile: where a Moka 3D start's client CPU goes (bench/split.lua: exclusive parts
-- that add up to the whole call): inside nginx over cosockets (the client nginx), and in plain
-- Lua over the default transport (bench/breakdown.lua) on Lua 5.4 and LuaJIT; then `perf record`
-- of a Lua 5.4 loop of Moka 3D starts (when perf works here). PAYKIT_BENCH_PROFILE_N: calls
-- per measurement (default 3000).
local function profile()
  make_certs()
  local n = math.max(100, math.floor(tonumber(os.getenv("PAYKIT_BENCH_PROFILE_N") or 3000)))
  local sv = { HTTP_PORT = PORT.http, HTTPS_PORT = PORT.https, NGINX_PORT = PORT.nginx, FRESH_PORT = PORT.fresh, DIR = DIR,
    MOKA = F.moka_path, MOCOPAY = F.mocopay_path, ZIPPY = F.zippy_path, PORTS = { PORT.http } }
  local srv = nginx.start("bench", SERVER, sv)
  local cv = { CLIENT_PORT = PORT.client, ROOT = ROOT, PORTS = { PORT.client } }
  local cli_ok, cli = pcall(nginx.start, "bench-client", CLIENT, cv)
  local base = "http://127.0.0.1:" .. PORT.http
  local lines = {}
  local load0 = loadavg()
  local ok, err = pcall(function()
    if not cli_ok then error(cli, 0) end
    for _, lua in ipairs { "lua5.4", "luajit" } do
      log("profile: " .. lua .. ", default transport")
      lines[#lines + 1] = capture(lua .. " bench/breakdown.lua " .. q(base) .. " " .. n)
    end
    log("profile: inside nginx")
    lines[#lines + 1] = curl_get(string.format("http://127.0.0.1:%d/breakdown?port=%d&n=%d", PORT.client, PORT.nginx, n))
    if sh("perf stat -e task-clock true >/dev/null 2>&1") then
      local data = DIR .. "/perf.data"
      capture("perf record -F 1999 -g -o " .. q(data) .. " lua5.4 bench/calls.lua moka seq " .. q(base) .. " 4")
      local rep = "perf report -i " .. q(data) .. " --stdio --no-children -g none --percent-limit 0.7 "
      lines[#lines + 1] = "perf (Lua 5.4, Moka 3D start loop, default transport, client process), self time by library:\n"
        .. capture(rep .. "--sort dso 2>/dev/null | grep '%'")
        .. "\nby symbol (lua5.4 has no symbols here: its addresses are the interpreter):\n"
        .. capture(rep .. "--sort dso,symbol 2>/dev/null | grep '%' | head -30")
    else
      lines[#lines + 1] = "(perf is not usable here: no perf profile)\n"
    end
  end)
  if cli_ok then cli:stop() end
  srv:stop()
  if not ok then error(err, 0) end
  local load1 = loadavg()
  local head = string.format("paykit profile, %s; loadavg before %s, after %s\n", os.date("!%Y-%m-%d %H:%M UTC"), load0, load1)
  if (tonumber(load0:match("^(%S+)")) or 0) > 0.5 * NCPU then
    head = head .. "WARNING: the machine was busy: CPU times per call are inflated by contention (caches, frequency).\n"
  end
  local text = head .. "\n" .. table.concat(lines, "\n")
  writefile(DIR .. "/profile.txt", text)
  io.write(text, "(stored in build/bench/profile.txt)\n")
end

if arg[1] == "profile" then profile() else main() end
