-- Real redis-server for specs: each server gets its own generated config (127.0.0.1, its port,
-- its dir under build/test/, appendonly yes with fsync always, a password or ACL users) and is
-- stopped by the spec that started it.
--   local rs = require "spec.support.redis"
--   local srv = rs.start { port = 16400, password = "pw", users = { { "app", "app-pw" } } }
--   srv:cli("DEBUG", "SLEEP", "0")   -- redis-cli as the admin (default user)
--   srv:kill() / srv:restart() / srv:stop()
--   local cl = rs.cluster { ports = { 17001, 17002, 17003 } }   -- 3 masters, then cl:stop()
local M = {}

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok, _, rc = p:close()
  if type(ok) == "number" then rc = ok; ok = rc == 0 end -- Lua 5.1/LuaJIT without 5.2 compat
  return out, ok == true or rc == 0
end
M.sh = sh

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Server = {}
Server.__index = Server

-- redis-cli against this server as the admin; returns its output (trimmed).
function Server:cli(...)
  local parts = { "redis-cli", "-h 127.0.0.1", "-p", self.port, "--no-auth-warning" }
  if self.password then parts[#parts + 1] = "-a " .. quote(self.password) end
  for _, a in ipairs { ... } do parts[#parts + 1] = quote(a) end
  local out = sh(table.concat(parts, " "))
  return (out:gsub("%s+$", ""))
end

function Server:alive() return self:cli("PING") == "PONG" end

function Server:pid()
  local f = io.open(self.dir .. "/redis.pid")
  if not f then return nil end
  local pid = tonumber(f:read("*a"))
  f:close()
  return pid
end

local function wait(pred, what)
  for _ = 1, 200 do
    if pred() then return true end
    os.execute("sleep 0.05")
  end
  error("spec/support/redis: " .. what)
end

function Server:launch()
  local out, ok = sh("redis-server " .. quote(self.conf))
  if not ok then error("redis-server did not start: " .. out) end
  wait(function() return self:alive() end, "redis-server on port " .. self.port .. " did not answer PING")
end

-- kill -9: no shutdown save; what survives is what the AOF (fsync always) holds.
function Server:kill()
  local pid = self:pid()
  if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  wait(function() return not self:alive() end, "redis-server on port " .. self.port .. " did not die")
  os.remove(self.dir .. "/redis.pid")
end

function Server:restart() self:kill(); self:launch() end

function Server:stop()
  if self:alive() then self:cli("SHUTDOWN", "NOSAVE") end
  local pid = self:pid()
  if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  os.execute("rm -rf " .. quote(self.dir))
end

--- Starts one redis-server. opts: port (required), password (the default user's),
-- users ({{name, password}, ...}: ACL users allowed every command on every key), cluster (true:
-- cluster-enabled), extra (more config lines).
function M.start(opts)
  local port = assert(opts.port, "port")
  os.execute("mkdir -p build/test")
  local dir = sh("mktemp -d " .. quote(os.getenv("PWD") .. "/build/test/redis-" .. port .. ".XXXXXX")):gsub("%s+$", "")
  local lines = {
    "bind 127.0.0.1", "port " .. port, "daemonize yes", "dir " .. dir, "pidfile " .. dir .. "/redis.pid",
    "logfile " .. dir .. "/redis.log", "appendonly yes", "appendfsync always", 'save ""',
    "enable-debug-command local",
  }
  if opts.password then lines[#lines + 1] = "requirepass " .. opts.password end
  for _, u in ipairs(opts.users or {}) do
    lines[#lines + 1] = "user " .. u[1] .. " on >" .. u[2] .. " ~* &* +@all"
  end
  if opts.cluster then
    lines[#lines + 1] = "cluster-enabled yes"
    lines[#lines + 1] = "cluster-config-file " .. dir .. "/nodes.conf"
    lines[#lines + 1] = "cluster-node-timeout 5000"
  end
  for _, l in ipairs(opts.extra or {}) do lines[#lines + 1] = l end
  local conf = dir .. "/redis.conf"
  local f = assert(io.open(conf, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local s = setmetatable({ port = port, dir = dir, conf = conf, password = opts.password }, Server)
  s:launch()
  return s
end

local Cluster = {}
Cluster.__index = Cluster

function Cluster:stop() for _, s in ipairs(self.servers) do s:stop() end end

-- The nodes as "127.0.0.1:port" strings (the client's seeds).
function Cluster:seeds()
  local t = {}
  for i, s in ipairs(self.servers) do t[i] = "127.0.0.1:" .. s.port end
  return t
end

--- A Redis Cluster of 3 masters (no replicas) on loopback: opts.ports (3 ports).
function M.cluster(opts)
  local servers = {}
  for i, p in ipairs(opts.ports) do servers[i] = M.start { port = p, cluster = true } end
  local addrs = {}
  for i, p in ipairs(opts.ports) do addrs[i] = "127.0.0.1:" .. p end
  local out, ok = sh("redis-cli --cluster create " .. table.concat(addrs, " ") .. " --cluster-replicas 0 --cluster-yes")
  if not ok then for _, s in ipairs(servers) do s:stop() end; error("redis-cli --cluster create failed: " .. out) end
  local c = setmetatable({ servers = servers }, Cluster)
  wait(function()
    for _, s in ipairs(servers) do
      if not s:cli("CLUSTER", "INFO"):find("cluster_state:ok", 1, true) then return false end
    end
    return true
  end, "the cluster did not reach cluster_state:ok")
  return c
end

--- A CA and a server certificate for "localhost" only (no IP address in it), for a Redis TLS
-- port, under build/test/<name>; returns the directory (ca.crt, server.crt, server.key).
function M.tls_certs(name)
  local dir = os.getenv("PWD") .. "/build/test/" .. name
  assert(select(2, sh("mkdir -p " .. quote(dir))), "mkdir " .. dir)
  local f = assert(io.open(dir .. "/server.ext", "w"))
  f:write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"); f:close()
  for _, cmd in ipairs {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=paykit redis CA' -addext basicConstraints=critical,CA:TRUE"
      .. " -addext keyUsage=critical,keyCertSign,cRLSign -keyout " .. dir .. "/ca.key -out " .. dir .. "/ca.crt",
    "openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout " .. dir .. "/server.key -out " .. dir .. "/server.csr",
    "openssl x509 -req -days 2 -in " .. dir .. "/server.csr -CA " .. dir .. "/ca.crt -CAkey " .. dir .. "/ca.key"
      .. " -CAcreateserial -extfile " .. dir .. "/server.ext -out " .. dir .. "/server.crt",
  } do assert(select(2, sh(cmd)), cmd) end
  return dir
end

return M
