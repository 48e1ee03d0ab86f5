-- Starts and stops the fault server (spec/support/fault_server.lua) for the specs, with its
-- certificates made by the openssl CLI in build/fault/:
--   ca.crt          the test CA (the clients trust it)
--   wronghost.crt   signed by the test CA, for wrong.example only
--   untrusted.crt   self-signed, for localhost and 127.0.0.1 (no client trusts it)
local cjson = require "cjson"
local socket = require "socket"

local _M = {}

_M.PORTS = { http = 18900, untrusted = 18901, wronghost = 18902, dns = 18903, refused = 18909 }

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok and code == 0
end

local function write(path, data)
  local f = assert(io.open(path, "wb")); f:write(data); f:close()
end

local function make_certs(dir)
  local q = " >>'" .. dir .. "/openssl.log' 2>&1"
  local ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local function run(cmd, what) assert(sh("cd '" .. dir .. "' && " .. cmd .. q), "openssl: " .. what) end
  run("openssl req -x509" .. ec .. " -keyout ca.key -out ca.crt -days 2 -subj '/CN=paykit fault CA'"
    .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'", "CA")
  write(dir .. "/wronghost.ext", "subjectAltName=DNS:wrong.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  run("openssl req" .. ec .. " -keyout wronghost.key -out wronghost.csr -subj '/CN=wrong.example'", "wronghost key")
  run("openssl x509 -req -in wronghost.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
    .. " -out wronghost.crt -extfile wronghost.ext", "wronghost certificate")
  run("openssl req -x509" .. ec .. " -keyout untrusted.key -out untrusted.crt -days 2 -subj '/CN=localhost'"
    .. " -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1'", "untrusted certificate")
end

-- Starts the server; returns the handle {dir, log(), reset(), stop()}.
function _M.start(root)
  if not root then
    local p = assert(io.popen("pwd")); root = p:read("*l"); p:close()
  end
  local dir = root .. "/build/fault"
  assert(sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'"))
  make_certs(dir)
  local P = _M.PORTS
  assert(sh(("lua5.4 '%s/spec/support/fault_server.lua' '%s' %d %d %d %d >'%s/server.log' 2>&1 & echo $! >'%s/pid'")
    :format(root, dir, P.http, P.untrusted, P.wronghost, P.dns, dir, dir)))
  local f = assert(io.open(dir .. "/pid")); local pid = assert(tonumber(f:read("*l"))); f:close()
  for _ = 1, 100 do
    local r = io.open(dir .. "/ready")
    if r then r:close(); break end
    socket.sleep(0.05)
  end
  assert(io.open(dir .. "/ready"), "the fault server did not start: see " .. dir .. "/server.log")
  local self = { dir = dir, pid = pid, cafile = dir .. "/ca.crt" }

  local function get(path)
    local c = assert(socket.connect("127.0.0.1", P.http))
    c:settimeout(10)
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: fault\r\nContent-Length: 0\r\n\r\n"))
    local status = assert(c:receive("*l"))
    local len
    while true do
      local line = assert(c:receive("*l"))
      if line == "" then break end
      local n = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
      if n then len = tonumber(n) end
    end
    local body = assert(c:receive(len))
    c:close()
    assert(status:find(" 200 ", 1, true), status)
    return cjson.decode(body)
  end

  --- The record: {requests = {{cell, method, path, conn, nth, headers (lowercase names), size (of the body)}, ...}, conns = {[port] = n},
  -- handshakes = {[port] = n}}.
  function self.log() return get("/_log") end
  function self.reset() get("/_reset") end
  function self.stop()
    sh("kill " .. pid .. " 2>/dev/null")
  end
  return self
end

return _M
