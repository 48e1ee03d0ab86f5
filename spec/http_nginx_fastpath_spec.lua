-- paykit.http's direct first try inside nginx (no scheduler, @{with}, logger, hook or per-call
-- timeout: the first attempt handed straight to paykit.cosocket) against the general way (the
-- same transport with send_once replaced by a wrapper, and one with a logger and hooks, so
-- request goes through general_request): over every fault server cell, charging and
-- idempotent calls, methods, bodies, headers, json and a given correlation id, the answers,
-- the errors and what reached the server must be the same. A call a cell answers twice
-- (drop_second, idle_close) is made twice in one nginx request, the second on the connection
-- the first left in the pool.
-- Ports: 18885 the nginx the calls are made from (one worker); the fault server's.
-- The cells, the cases' calls, the outcomes and the comparison: spec/support/fastpath_cells.lua
-- (shared with spec/http_fastpath_spec.lua; required inside the front nginx too).
local nginx = require "spec.support.nginx"
local fault = require "spec.support.fault"
local cells = require "spec.support.fastpath_cells"
local cjson = require "cjson"

local FRONT = 18885
local P = fault.PORTS

local FRONT_CONF = [[
  lua_socket_log_errors off;
  init_by_lua_block {
    local http = require "paykit.http"
    local cjson = require "cjson"
    local cells = require "spec.support.fastpath_cells"
    -- the calls request hands to its general way: fresh (the direct first try did not serve the
    -- call) and handed (it made the first attempt and hands its outcome on), counted through
    -- the general_request upvalue of ngx_first (request's direct first try inside nginx)
    local ngx_first
    for i = 1, math.huge do
      local name, v = debug.getupvalue(http.request, i)
      if name == nil then break end
      if name == "ngx_first" then ngx_first = v end
    end
    assert(ngx_first, "http.request has no upvalue ngx_first")
    local counts = { fresh = 0, handed = 0 }
    for i = 1, math.huge do
      local name, real = debug.getupvalue(ngx_first, i)
      if name == nil then break end
      if name == "general_request" then
        debug.setupvalue(ngx_first, i, function(self, req, started, ...)
          if started == nil then counts.fresh = counts.fresh + 1 else counts.handed = counts.handed + 1 end
          return real(self, req, started, ...)
        end)
      end
    end
    function run_case(a)
      local mode, variant, cell, n = a.mode, tonumber(a.variant), a.cell, tonumber(a.n)
      local opts = { retry = { attempts = 3, base_delay = 0.001, max_delay = 0.002, deadline = 30 }, timeout = 0.4,
        connect_timeout = 0.4, correlation_header = variant == 1 and "X-Correlation-Id" or false,
        sleep = function(s) ngx.sleep(s) end, random = function() return 0.5 end,
        pool_name = mode .. "-" .. n } -- a pool of its own: no connection left by another case
      if mode == "watched" then
        opts.logger = function() end
        opts.hooks = { before = function() end, after = function() end }
      end
      local t = http.new(opts)
      if mode == "general" then t.send_once = function(self, r) return http.send_once(self, r) end end
      local c = cells.case(cell, variant, n, "http://127.0.0.1:${HTTP}/", "http://127.0.0.1:${REFUSED}/refused")
      counts.fresh, counts.handed = 0, 0
      local outs = {}
      for i = 1, c.calls do
        if i == 2 and cell == "idle_close" then ngx.sleep(0.5) end
        local headers = cells.headers(n)
        if variant == 2 then headers[1] = "Accept: text/plain" end
        local res, err = t:request { method = c.method, url = c.url, body = c.body, op = "spec.ngxfast",
          idempotent = c.idempotent, headers = headers, own_headers = variant == 3 or nil,
          json = variant == 2 or nil, correlation_id = variant == 1 and ("corr-" .. n) or nil }
        outs[i] = cells.outcome(res, err, true)
      end
      return cjson.encode { outs = outs, fresh = counts.fresh, handed = counts.handed, wire = t.wire ~= nil }
    end
  }
  server {
    listen 127.0.0.1:${PORT};
    location = /run { content_by_lua_block { ngx.print(run_case(ngx.req.get_uri_args())) } }
  }
]]

describe("paykit.http direct first try inside nginx", function()
  local f, front
  setup(function()
    f = fault.start(nginx.root())
    front = nginx.start("http-ngxfast", FRONT_CONF, { PORT = FRONT, HTTP = P.http, REFUSED = P.refused })
  end)
  teardown(function()
    if front then front:stop() end
    if f then f.stop() end
  end)

  local function run(mode, variant, cell, n)
    local p = io.popen(string.format("curl -s --max-time 30 'http://127.0.0.1:%d/run?mode=%s&variant=%d&cell=%s&n=%d'",
      FRONT, mode, variant, cell, n))
    local out = p:read("*a"); p:close()
    local ok, got = pcall(cjson.decode, out)
    assert(ok and type(got) == "table", "the front nginx answered: " .. out:sub(1, 300))
    return got
  end

  it("gives the general way's answers, errors and server record over every fault cell", function()
    local direct_answers = 0
    local cases = cells.compare({ "direct", "general", "watched" }, function(mode, cell, variant, n)
      f.reset()
      local got = run(mode, variant, cell, n)
      local calls = #got.outs
      -- inside nginx no wire client is made, whatever way the calls went
      assert.is_false(got.wire, cell .. " variant " .. variant .. " " .. mode)
      if mode == "direct" then
        -- every call made its first attempt directly; only one that is not final goes on
        assert.equal(0, got.fresh, cell .. " variant " .. variant)
        if cell == "ok" then assert.equal(0, got.handed, "ok variant " .. variant) end
        for i = 1, calls do if got.outs[i].status == 200 then direct_answers = direct_answers + 1 end end
      else
        assert.equal(calls, got.fresh, cell .. " variant " .. variant .. " " .. mode)
      end
      local reached = {}
      for _, q in ipairs(f.log().requests) do
        reached[#reached + 1] = { q.cell, q.method, q.path, q.size, q.headers }
      end
      return { outs = got.outs, reached = reached }
    end)
    assert.equal(#cells.CELLS * cells.VARIANTS, cases)
    assert.is_true(direct_answers >= 8, "too few answers through the direct first try: " .. direct_answers)
  end)
end)
