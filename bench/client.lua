-- One benchmark client run, in its own process so its CPU time is its own.
--   <lua> bench/client.lua CLIENT MODE URL N [IN_FLIGHT] [CAFILE]
-- CLIENT: paykit | luasocket | luacurl; MODE: seq | batch.
-- Prints one line: "result <requests ok> <errors> <wall seconds> <cpu seconds>".
-- Every request is the same ~500-byte JSON POST; a response counts as ok when it is a 200
-- with the expected ~200-byte body.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path

local client, mode, url, n, in_flight, cafile = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6]
if cafile == "" then cafile = nil end
local payload = dofile("bench/payload.lua")
local socket = require "socket"
local HEADERS = { "Content-Type: application/json", "Accept: application/json" }

local ok, errors = 0, 0
local function count(status, body)
  if status == 200 and body == payload.response then ok = ok + 1 else errors = errors + 1 end
end

-- One untimed call of one() (the connection, the TLS session), then n timed calls; returns the
-- wall and CPU seconds of the timed ones.
local function timed_calls(one)
  one()
  local t0, c0 = socket.gettime(), os.clock()
  for _ = 1, n do count(one()) end
  return socket.gettime() - t0, os.clock() - c0
end

local run = {}

function run.paykit()
  local is_jit = type(jit) == "table"
  package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
  local core = require "paykit.core"
  local c = core.http_client { cafile = cafile, max_connections = math.max(16, in_flight or 1) }
  local req = { method = "POST", url = url, headers = HEADERS, body = payload.request }
  -- warm-up: the connection (and TLS session) is made before the clock starts
  assert(c:request(req))
  local t0, c0 = socket.gettime(), os.clock()
  if mode == "seq" then
    for _ = 1, n do
      local res = c:request(req)
      if res then count(res.status, res.body) else errors = errors + 1 end
    end
  else
    local reqs = {}
    for i = 1, n do reqs[i] = req end
    local out = c:batch(reqs, { max_in_flight = in_flight })
    for i = 1, n do count(out[i].status, out[i].body) end
  end
  local t1, c1 = socket.gettime(), os.clock()
  c:close()
  return t1 - t0, c1 - c0
end

-- socket.http (and ssl.https for TLS): what a plain Lua user reaches for. It sends
-- "Connection: close", so every request opens a new connection (and TLS handshake).
function run.luasocket()
  local http = require(url:match("^https:") and "ssl.https" or "socket.http")
  local ltn12 = require "ltn12"
  local function one()
    local sink = {}
    local _, status = http.request {
      method = "POST", url = url, sink = ltn12.sink.table(sink),
      source = ltn12.source.string(payload.request),
      headers = { ["content-type"] = "application/json", ["content-length"] = #payload.request },
      cafile = cafile, verify = cafile and "peer" or nil, protocol = "any",
    }
    return status, table.concat(sink)
  end
  return timed_calls(one)
end

-- Debian's lua-curl (Lua-cURL 0.3, module "curl"; Lua 5.1/5.2): one easy handle, kept alive.
function run.luacurl()
  local curl = require "curl"
  local e = curl.easy_init()
  local chunks
  e:setopt(curl.OPT_URL, url)
  e:setopt(curl.OPT_POSTFIELDS, payload.request)
  e:setopt(curl.OPT_HTTPHEADER, HEADERS)
  if cafile then e:setopt(curl.OPT_CAINFO, cafile) end
  e:setopt(curl.OPT_WRITEFUNCTION, function(s) chunks[#chunks + 1] = s; return #s end)
  local function one()
    chunks = {}
    local okp = pcall(e.perform, e)
    if not okp then return nil end
    return 200, table.concat(chunks) -- Lua-cURL 0.3 has no getinfo: the body decides
  end
  return timed_calls(one)
end

local wall, cpu = run[client]()
io.write(string.format("result %d %d %.6f %.6f\n", ok, errors, wall, cpu))
