--- paykit.redis: a small Redis client for the shared stores (plain Lua and nginx alike).
--
-- Outside nginx it talks through the C core on libhiredis (blocking, with connect and read
-- timeouts); inside nginx, in a phase that allows cosockets, over `ngx.socket.tcp` (never
-- blocking the worker, nginx's keepalive pool) with the replies parsed by the C core's hiredis
-- reader. Either way:
--
--  * connections are pooled per host:port:db:user (and password): a fresh one sends AUTH
--    (password, or ACL user and password) and SELECT once, a pooled one is reused as it is;
--  * arguments are binary safe (any Lua string), replies are Lua values: a string, a number,
--    `false` for a nil reply, a table for an array (an error inside it is `{err=, code=}`);
--  * failures are `nil, message, code`: an error reply's first word ("NOSCRIPT", "WRONGPASS",
--    "MOVED", ...) or the connection's "timeout", "closed", "connect", "protocol", "io"; inside
--    nginx in a phase without cosockets (log, header_filter, init_worker, ...) every command
--    fails with code "phase" rather than block the worker (use a timer);
--  * Redis Cluster (`cluster = true`): the slot map comes from CLUSTER SLOTS on one of the
--    seeds; a command goes to the master of its key's slot (`paykit.core.redis_slot`, hash tags
--    honoured), MOVED updates the map and retries, ASK sends ASKING then the command to the
--    named node.
--
-- TLS: hiredis 0.14 (Debian's) has no TLS, so `tls = true` is refused outside nginx with a
-- clear error; inside nginx the cosocket does the TLS handshake (verified, `server_name`).
-- @module paykit.redis
-- @usage
--   local redis = require "paykit.redis"
--   local r = assert(redis.new { host = "127.0.0.1", port = 6379, password = "...", db = 2 })
--   assert(r:call("SET", "k", "v", "PX", 5000))
--   local v, err, code = r:call("GET", "k")   -- "v", or false when there is no such key
local core = require "paykit.core"

local _M = {}

local unpack = table.unpack or unpack -- luacheck: ignore
local function unpack_args(c) return unpack(c, 1, #c) end

local OPTIONS = {
  host = "string", port = "number", password = "string", user = "string", db = "number",
  connect_timeout = "number", timeout = "number", pool_size = "number", keepalive = "number",
  tls = "boolean", server_name = "string", ssl_verify = "boolean", cluster = "boolean",
  nodes = "table", max_redirects = "number",
}

local function in_cosocket_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  local ok, phase = pcall(ngx.get_phase)
  return ok and (phase == "rewrite" or phase == "access" or phase == "content" or phase == "timer"
    or phase == "server_rewrite" or phase == "ssl_cert" or phase == "preread")
end
_M.in_cosocket_phase = in_cosocket_phase

--- Whether cosockets may be used here (inside nginx, in a phase that allows them): the client
-- then talks over ngx.socket.tcp instead of the blocking hiredis connection.
-- @function in_cosocket_phase
-- @treturn boolean

-- ---------------------------------------------------------------------------- plain Lua
-- Idle hiredis connections by pool key (one process; a connection is used by one call at a time).
local idle = {}
-- Cluster slot maps by seed list, shared by the clients of one Lua state (nginx makes a client
-- per request): a cache of the cluster's layout, corrected by MOVED and refreshed on failure.
local slot_maps = {}

local Plain = {}
Plain.__index = Plain

function Plain:call(...) return self.c:call(...) end
function Plain:pipeline(cmds) return self.c:pipeline(cmds) end

-- Back to the pool when healthy, else closed.
function Plain:release(ok)
  if not ok or self.c:broken() then self.c:close(); return end
  local list = idle[self.key]
  if not list then list = {}; idle[self.key] = list end
  if #list < self.pool_size then list[#list + 1] = self.c else self.c:close() end
end

local function plain_checkout(o, host, port, key)
  local list = idle[key]
  local c = list and list[#list]
  if c then
    list[#list] = nil
    c:settimeout(o.timeout)
    return setmetatable({ c = c, key = key, pool_size = o.pool_size, fresh = false }, Plain)
  end
  local err, code
  c, err, code = core.redis_connect(host, port, o.connect_timeout, o.timeout)
  if not c then return nil, err, code end
  return setmetatable({ c = c, key = key, pool_size = o.pool_size, fresh = true }, Plain)
end

-- ------------------------------------------------------------------------------- nginx
local Cosock = {}
Cosock.__index = Cosock

local function read_reply(self)
  local reader = self.reader
  while true do
    local v, err, code = reader:get()
    if v ~= nil or err ~= nil then return v, err, code end
    local data, rerr, partial = self.sock:receiveany(65536)
    if not data then
      if partial and partial ~= "" then self.replied = true; reader:feed(partial) end
      self.dead = true
      if rerr == "timeout" then return nil, "redis command: timed out", "timeout" end
      return nil, "redis command: " .. tostring(rerr), rerr == "closed" and "closed" or "io"
    end
    self.replied = true -- a byte of a reply came: the command reached the server
    local ok, ferr = reader:feed(data)
    if not ok then self.dead = true; return nil, ferr, "protocol" end
  end
end

-- A failed send: nothing of the command was taken by the socket (nginx reports a send as
-- failed only when a write fails, and a command fits one write), so it never reached Redis.
local function send_failed(self, err)
  self.dead = true
  self.unsent = err ~= "timeout"
  return nil, "redis send: " .. tostring(err), err == "timeout" and "timeout" or "io"
end

function Cosock:call(...)
  local ok, err = self.sock:send(core.redis_format(...))
  if not ok then return send_failed(self, err) end
  return read_reply(self)
end

function Cosock:pipeline(cmds)
  local parts = {}
  for i, c in ipairs(cmds) do parts[i] = core.redis_format(unpack_args(c)) end
  local ok, err = self.sock:send(table.concat(parts))
  if not ok then return send_failed(self, err) end
  local out = {}
  for i = 1, #cmds do
    local v, e, code = read_reply(self)
    if v == nil then
      if code == "timeout" or code == "closed" or code == "io" or code == "protocol" then return nil, e, code end
      v = { err = e, code = code }
    end
    out[i] = v
  end
  return out
end

function Cosock:release(ok)
  if ok and not self.dead then
    self.sock:setkeepalive(self.keepalive, self.pool_size)
  else
    self.sock:close()
  end
end

-- A connection from nginx's pool for key, or a new one. fresh_only: the pool's idle
-- connections are closed first (one of them was found dead, so its siblings may be too) and a
-- new connection is made.
local function cosocket_checkout(o, host, port, key, fresh_only)
  local ngx = rawget(_G, "ngx")
  local sock, fresh
  for _ = 1, (fresh_only and o.pool_size + 1 or 1) do
    sock = ngx.socket.tcp()
    sock:settimeouts(o.connect_timeout, o.timeout, o.timeout)
    local ok, err = sock:connect(host, port, { pool = key, pool_size = o.pool_size })
    if not ok then
      if err == "timeout" then return nil, "redis connect to " .. host .. ":" .. port .. ": timed out", "timeout" end
      return nil, "redis connect to " .. host .. ":" .. port .. ": " .. tostring(err), "connect"
    end
    fresh = (sock:getreusedtimes() or 0) == 0
    if fresh or not fresh_only then break end
    sock:close()
  end
  if not fresh and fresh_only then
    sock:close()
    return nil, "redis connect to " .. host .. ":" .. port .. ": no new connection (the pool kept giving idle ones)", "connect"
  end
  if fresh and o.tls then
    -- false: no session object wanted (and resty.core's session path asserts on some failures)
    local hok, done, herr = pcall(sock.sslhandshake, sock, false, o.server_name or host, o.ssl_verify ~= false)
    if not hok or not done then
      sock:close()
      return nil, "redis TLS handshake with " .. host .. ": " .. tostring(hok and herr or done), "tls"
    end
    -- lua-nginx-module 0.10.23: when the handshake completes at once, a refused certificate
    -- closes the connection but the call still answers true (paykit.cosocket checks the same)
    local _, closed = sock:getreusedtimes()
    if closed then
      return nil, "redis TLS handshake with " .. host .. ": the connection was closed right after the handshake:"
        .. " the certificate was refused (nginx's error log has the reason)", "tls"
    end
  end
  return setmetatable({ sock = sock, reader = core.redis_reader(), keepalive = o.keepalive,
                        pool_size = o.pool_size, fresh = fresh }, Cosock)
end

-- --------------------------------------------------------------------------- the client
local Client = {}
Client.__index = Client

-- A client's password lives here, not in the client table: a client printed, inspected or
-- encoded (pairs, cjson, paykit.redact.dump) shows no password. Weak keys: it goes with the client.
local passwords = setmetatable({}, { __mode = "k" })
-- The pool key names a password by a keyed digest (this Lua state's own random key), so that
-- a printed pool key is no unsalted hash of the password to guess offline.
local POOL_KEY = core.random_hex(16)
Client.__tostring = function(self)
  return "paykit.redis(" .. (self.cluster and "cluster " or "") .. self.nodes[1].host .. ":" .. self.nodes[1].port .. ")"
end

local function config_error(field, message)
  return nil, "paykit.redis: " .. field .. ": " .. message, "config"
end

--- A client. Nothing is connected until the first command.
-- @tparam table opts `host` ("127.0.0.1"), `port` (6379), `password`, `user` (an ACL user;
--   needs `password`), `db` (0; not with `cluster`), `connect_timeout` and `timeout`
--   (milliseconds, 1000 each: the read timeout of every reply), `pool_size` (16 idle
--   connections per pool key), `keepalive` (nginx: idle milliseconds, 60000), `tls` (nginx
--   only), `server_name`, `ssl_verify` (true), `cluster` (true: Redis Cluster), `nodes`
--   (cluster seeds: {"127.0.0.1:7001", ...}; default host:port), `max_redirects` (5)
-- @treturn table the client
-- @return[2] nil
-- @return[2] message naming the option
-- @return[2] "config"
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then return config_error("opts", "must be a table") end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then return config_error(tostring(k), "unknown option") end
    if type(v) ~= want then return config_error(k, "must be a " .. want) end
  end
  local o = {
    user = opts.user, db = opts.db or 0,
    connect_timeout = opts.connect_timeout or 1000, timeout = opts.timeout or 1000,
    pool_size = opts.pool_size or 16, keepalive = opts.keepalive or 60000, tls = opts.tls or false,
    server_name = opts.server_name, ssl_verify = opts.ssl_verify, cluster = opts.cluster or false,
    max_redirects = opts.max_redirects or 5,
  }
  for _, k in ipairs { "connect_timeout", "timeout", "pool_size", "keepalive", "max_redirects" } do
    local v = o[k]
    if v < 1 or v ~= math.floor(v) then return config_error(k, "must be a positive whole number") end
  end
  if o.db < 0 or o.db ~= math.floor(o.db) then return config_error("db", "must be a whole number >= 0") end
  if o.cluster and o.db ~= 0 then return config_error("db", "Redis Cluster has only db 0") end
  local password = opts.password
  if o.user and not password then return config_error("password", "an ACL user needs a password") end
  if o.tls and not in_cosocket_phase() then
    return config_error("tls", "TLS is not available outside nginx: Debian's hiredis 0.14 has no TLS support "
      .. "(use stunnel or a private network, or run inside nginx where the cosocket does TLS)")
  end
  o.nodes = {}
  local seeds = opts.nodes or { (opts.host or "127.0.0.1") .. ":" .. tostring(opts.port or 6379) }
  for i, s in ipairs(seeds) do
    local h, p = tostring(s):match("^(.+):(%d+)$")
    if not h then return config_error("nodes[" .. i .. "]", "must be \"host:port\"") end
    o.nodes[i] = { host = h, port = tonumber(p) }
  end
  if #o.nodes == 0 then return config_error("nodes", "must name at least one node") end
  o.seed_key = table.concat(seeds, ",")
  -- pool key: another password (or TLS name) never rides on a connection made with this one
  o.pool_tail = ":" .. o.db .. ":" .. (o.user or "") .. ":"
    .. (password and core.hmac("sha256", POOL_KEY, password, "hex"):sub(1, 16) or "")
    .. (o.tls and (":tls:" .. (o.server_name or "") .. (o.ssl_verify == false and ":noverify" or "")) or "")
  o.slots = nil -- cluster: slot -> "host:port"
  setmetatable(o, Client)
  passwords[o] = password
  return o
end

--- A client (from @{new}).
-- @type Client

-- A connection to host:port, authenticated and on the right db.
function Client:_checkout(host, port, fresh_only)
  local key = "paykit.redis:" .. host .. ":" .. port .. self.pool_tail
  local conn, err, code
  if in_cosocket_phase() then conn, err, code = cosocket_checkout(self, host, port, key, fresh_only)
  else
    local ngx = rawget(_G, "ngx")
    if type(ngx) == "table" and type(ngx.get_phase) == "function" and ngx.get_phase() ~= "init" then
      -- hiredis would block the whole worker here
      return nil, "paykit.redis: no cosockets in nginx's " .. tostring(ngx.get_phase()) .. " phase and a blocking "
        .. "call would stall the worker: call from a request handler or a timer (ngx.timer.at)", "phase"
    end
    conn, err, code = plain_checkout(self, host, port, key)
  end
  if not conn then return nil, err, code end
  if conn.fresh then
    local cmds = {}
    local password = passwords[self]
    if password then
      cmds[#cmds + 1] = self.user and { "AUTH", self.user, password } or { "AUTH", password }
    end
    if self.db ~= 0 then cmds[#cmds + 1] = { "SELECT", tostring(self.db) } end
    if #cmds > 0 then
      local res
      res, err, code = conn:pipeline(cmds)
      if not res then conn:release(false); return nil, err, code end
      for _, r in ipairs(res) do
        if type(r) == "table" and r.err then
          conn:release(false)
          -- never the password itself in the message
          return nil, "redis " .. (r.code == "WRONGPASS" and "AUTH refused (wrong user or password)" or r.err), r.code
        end
      end
    end
  end
  return conn
end

local CONN_CODES = { timeout = true, closed = true, connect = true, protocol = true, io = true, oom = true, tls = true }

-- Commands that may be sent a second time when the first may have run. Reads and
-- idempotent writes (a repeat leaves the same state: SET without GET, DEL, ZADD of a score,
-- ZREM, EXPIRE, AUTH, SELECT) are; so are the commands the journal is built on, whose repeat
-- cannot act twice: SET ... NX (a repeat answers nil, "exists") and the scripts made with
-- `script(source, {repeat_safe = true})` (the store's compare-and-set transition answers
-- "conflict" when repeated, its unlock 0). Anything else (INCR, LPUSH, APPEND, other
-- scripts, ...) is not.
local REPEAT_SAFE = {
  GET = true, MGET = true, EXISTS = true, TTL = true, PTTL = true, TYPE = true, STRLEN = true,
  HGET = true, HGETALL = true, HMGET = true, HEXISTS = true, SCARD = true, SISMEMBER = true, SMEMBERS = true,
  ZSCORE = true, ZCARD = true, ZCOUNT = true, ZRANGE = true, ZRANGEBYSCORE = true, ZREVRANGE = true,
  ZREVRANGEBYSCORE = true, ZRANK = true, LRANGE = true, LLEN = true, LINDEX = true, SCAN = true, KEYS = true,
  PING = true, ECHO = true, TIME = true, INFO = true, DBSIZE = true, CLUSTER = true, ASKING = true,
  AUTH = true, SELECT = true, DEL = true, UNLINK = true, ZREM = true, SREM = true, HDEL = true,
  EXPIRE = true, PEXPIRE = true, EXPIREAT = true, PEXPIREAT = true, PERSIST = true, HSET = true, SADD = true,
  SCRIPT = true,
}
local safe_scripts = {} -- sha1 -> true: scripts declared repeat-safe

local function repeat_safe(args)
  local cmd = tostring(args[1]):upper()
  if cmd == "SET" then
    for i = 4, #args do if tostring(args[i]):upper() == "GET" then return false end end
    return true
  end
  if cmd == "ZADD" then
    for i = 3, #args do if tostring(args[i]):upper() == "INCR" then return false end end
    return true
  end
  if cmd == "EVALSHA" then return safe_scripts[tostring(args[2])] == true end
  if cmd == "EVAL" then return safe_scripts[core.digest("sha1", tostring(args[2]), "hex")] == true end
  return REPEAT_SAFE[cmd] == true
end
_M.repeat_safe = repeat_safe

--- Whether a command may be sent again after a failure that may have come after Redis ran it
-- (the connection closed before any reply byte): reads, idempotent writes, SET ... NX and the
-- scripts made repeat-safe (see @{script}).
-- @function repeat_safe
-- @tparam table args the command and its arguments, `{"SET", "k", "v", "NX"}`
-- @treturn boolean

-- One command on one node: value | nil, err, code. A pooled connection that Redis closed
-- while it was idle (restarted, or its `timeout` passed) fails on first use, "closed" or "io"
-- and never a timeout, with no byte of a reply. Then it is dropped with its idle siblings and
-- the command goes once more, on a new connection, when that cannot make it run twice: the
-- command never left (inside nginx: the send failed), or it is @{repeat_safe}. Otherwise the
-- failure is returned (the command may have run: the caller decides, and the journal fails
-- closed).
function Client:_on_node(host, port, args, asking, retried)
  local conn, err, code = self:_checkout(host, port, retried)
  if not conn then return nil, err, code end
  local v
  v, err, code = self:_on_conn(conn, args, asking)
  if v == nil and not conn.fresh and not retried and (code == "closed" or code == "io") and not conn.replied
      and (conn.unsent or repeat_safe(args)) then
    local list = idle["paykit.redis:" .. host .. ":" .. port .. self.pool_tail]
    if list then for i = #list, 1, -1 do list[i]:close(); list[i] = nil end end
    return self:_on_node(host, port, args, asking, true)
  end
  return v, err, code
end

function Client._on_conn(_, conn, args, asking)
  local err, code
  local v
  if asking then
    local res
    res, err, code = conn:pipeline { { "ASKING" }, args }
    if res then
      v = res[2]
      if type(v) == "table" and v.err then err, code, v = v.err, v.code, nil end
    end
  else
    v, err, code = conn:call(unpack_args(args))
  end
  conn:release(v ~= nil or not CONN_CODES[code])
  return v, err, code
end

-- The key a command works on (cluster routing): EVAL/EVALSHA's first key, else argument 2.
local function key_of(args)
  local cmd = tostring(args[1]):upper()
  if cmd == "EVAL" or cmd == "EVALSHA" then
    if tonumber(args[3]) and tonumber(args[3]) > 0 then return args[4] end
    return nil
  end
  if cmd == "PING" or cmd == "TIME" or cmd == "CLUSTER" or cmd == "INFO" or cmd == "SCRIPT" then return nil end
  return args[2]
end

--- Cluster: reads the slot map (CLUSTER SLOTS) from the first seed that answers.
-- Done before the first command and when a master is gone; MOVED updates single slots.
-- @treturn boolean true
-- @return[2] nil
-- @return[2] message
-- @return[2] code
function Client:refresh_slots()
  local last_err, last_code
  for _, n in ipairs(self.nodes) do
    local res, err, code = self:_on_node(n.host, n.port, { "CLUSTER", "SLOTS" })
    if type(res) == "table" then
      local map = {}
      for _, range in ipairs(res) do
        local master = range[3]
        local addr = tostring(master[1]) .. ":" .. tostring(master[2])
        for s = range[1], range[2] do map[s] = addr end
      end
      self.slots = map
      slot_maps[self.seed_key] = map
      return true
    end
    last_err, last_code = err, code
  end
  return nil, "redis cluster: no seed answered CLUSTER SLOTS: " .. tostring(last_err), last_code
end

local function split_addr(a)
  local h, p = a:match("^(.+):(%d+)$")
  return h, tonumber(p)
end

--- Sends one command and reads its reply.
-- @param ... the command and its arguments (strings or numbers)
-- @return the reply (see the module description)
-- @return[2] nil
-- @return[2] message
-- @return[2] code
function Client:call(...)
  local args = { ... }
  if not self.cluster then
    return self:_on_node(self.nodes[1].host, self.nodes[1].port, args)
  end
  if not self.slots then self.slots = slot_maps[self.seed_key] end
  if not self.slots then
    local ok, err, code = self:refresh_slots()
    if not ok then return nil, err, code end
  end
  local key = key_of(args)
  local addr = key and self.slots[core.redis_slot(tostring(key))] or (self.nodes[1].host .. ":" .. self.nodes[1].port)
  local asking = false
  for _ = 0, self.max_redirects do
    local h, p = split_addr(addr)
    local v, err, code = self:_on_node(h, p, args, asking)
    if v ~= nil then return v end
    asking = false
    if code == "MOVED" then
      local slot, to = err:match("^MOVED (%d+) (%S+)")
      self.slots[tonumber(slot)] = to
      addr = to
      self.stale = true
    elseif code == "ASK" then
      addr = err:match("^ASK %d+ (%S+)")
      asking = true
    elseif CONN_CODES[code] and code ~= "timeout" and key then
      -- a master gone: ask the cluster again where the slot lives, once
      local ok = self:refresh_slots()
      local to = ok and self.slots[core.redis_slot(tostring(key))]
      if not to or to == addr then return nil, err, code end
      addr = to
    else
      return nil, err, code
    end
  end
  return nil, "redis cluster: too many redirects for one command", "redirects"
end

--- @section end

--- A Lua script run with EVALSHA (its SHA-1 computed here), sent again with EVAL when the
-- server answers NOSCRIPT (a restarted or new node).
-- @tparam string source the script
-- @tparam[opt] table opts `repeat_safe = true`: running it twice acts no more than once (a
--   compare-and-set, an owner-checked delete), so it may be sent again when the connection
--   failed after sending it (see @{repeat_safe})
-- @treturn table the script: `script:run(client, keys, args)` -> reply | nil, message, code
function _M.script(source, opts)
  local sha = core.digest("sha1", source, "hex")
  if opts and opts.repeat_safe then safe_scripts[sha] = true end
  return {
    sha = sha,
    run = function(_, client, keys, args)
      local a = { "EVALSHA", sha, #keys }
      for _, k in ipairs(keys) do a[#a + 1] = k end
      for _, v in ipairs(args or {}) do a[#a + 1] = v end
      local v, err, code = client:call(unpack_args(a))
      if v == nil and code == "NOSCRIPT" then
        a[1], a[2] = "EVAL", source
        return client:call(unpack_args(a))
      end
      return v, err, code
    end,
  }
end

--- Closes the idle pooled connections of this process (plain Lua; nginx keeps its own pool).
function _M.close_idle()
  for key, list in pairs(idle) do
    for _, c in ipairs(list) do c:close() end
    idle[key] = nil
  end
end

return _M
