-- paykit.http's inline send (outside nginx, no scheduler, send_once not replaced) against the
-- general one (the same transport with send_once replaced by a wrapper, so request() goes
-- through it), each with and without a logger and hooks: over every fault server cell, both
-- transports (wire, curl), charging and idempotent calls, varied methods, bodies, headers and
-- per-call timeouts, the answers, the errors and what reached the server must be the same.
-- The cells, the cases' calls, the outcomes and the comparison over every cell:
-- spec/support/fastpath_cells.lua (shared with spec/http_nginx_fastpath_spec.lua).
local http = require "paykit.http"
local fault = require "spec.support.fault"
local nginx = require "spec.support.nginx"
local cells = require "spec.support.fastpath_cells"

local P = fault.PORTS
local PLAIN = "http://127.0.0.1:" .. P.http .. "/"
local REFUSED = "http://127.0.0.1:" .. P.refused .. "/refused"
local RETRY = { attempts = 3, base_delay = 0.001, max_delay = 0.002, deadline = 30 }

-- Runs each call of calls (functions) as a paykit.loop call, one after another on one loop (the
-- scheduler path: the wire loop's positional start for the wire client); returns their results
-- (packed) and how many starts took the fields as arguments.
local core = require "paykit.core"
local unpack = table.unpack or unpack -- luacheck: ignore
local function in_loop(calls)
  local real, positional = core.wire_loop, 0
  core.wire_loop = function()
    local l = real()
    return setmetatable({ start = function(_, c, ...)
      if select("#", ...) > 1 then positional = positional + 1 end
      return l:start(c, ...)
    end }, { __index = function(_, k) return function(_, ...) return l[k](l, ...) end end })
  end
  local ok, lp = pcall(require("paykit.loop").new)
  core.wire_loop = real
  assert(ok, lp)
  local outs = {}
  for i, fn in ipairs(calls) do
    local h = lp:start(fn)
    while not h:done() do lp:step(0.05) end
    outs[i] = { n = 2, h:result() }
  end
  lp:close()
  return outs, positional
end

-- Counts the calls request makes of its general way (general_request, an upvalue of
-- http.request): fresh ones (the direct first try did not serve the call) and handed ones (it
-- made the first attempt and hands its outcome on); fn() runs with the counter in place.
local function general_calls(fn)
  local idx, real
  for i = 1, math.huge do
    local name, v = debug.getupvalue(http.request, i)
    if name == nil then break end
    if name == "general_request" then idx, real = i, v end
  end
  assert(idx, "http.request has no upvalue general_request")
  local n = { fresh = 0, handed = 0 }
  -- (LuaJIT's traces hold an upvalue never assigned as a constant: flushed with each change)
  local flush = type(jit) == "table" and jit.flush or function() end
  debug.setupvalue(http.request, idx, function(self, req, started, ...)
    if started == nil then n.fresh = n.fresh + 1 else n.handed = n.handed + 1 end
    return real(self, req, started, ...)
  end)
  flush()
  local ok, e = pcall(fn)
  debug.setupvalue(http.request, idx, real)
  flush()
  assert(ok, e)
  return n
end

local function make(transport, general, watched)
  local opts = { transport = transport, retry = RETRY, timeout = 0.4, connect_timeout = 0.4,
    correlation_header = false, sleep = function() end, random = function() return 0.5 end }
  if watched then
    opts.logger = function() end
    opts.hooks = { before = function() end, after = function() end }
  end
  local t = http.new(opts)
  if general then t.send_once = function(self, r) return http.send_once(self, r) end end
  return t
end

-- what a call gave, without what differs by nature (timings)
local outcome = cells.outcome

-- The direct path (wire, no request table) must pass on every option of the request: a case
-- is made on a transport of each path, and what the calls gave, the connections they used and
-- the headers and body sizes the server got must be the same. Each case also pins what the
-- option does (an anchor), so the case fails when both paths ignored it alike.
local TLS_PLAIN = "https://127.0.0.1:" .. P.http .. "/"
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function direct_cases()
  local cases = {}
  local function case(name, t) t.name = name; cases[#cases + 1] = t end
  -- idempotent true: the wire client sends once more on a fresh connection when a kept one
  -- dies under it (drop_second), within one attempt (retry = false); false or nil: it does not
  for _, idem in ipairs { true, false, "nil" } do
    local idempotent = idem ~= "nil" and idem or nil
    case("drop_second POST idempotent=" .. tostring(idem), {
      calls = { { method = "POST", path = "drop_second/k", body = "{}", idempotent = idempotent },
                { method = "POST", path = "drop_second/k", body = "{}", idempotent = idempotent } },
      anchor = function(outs) assert.equal(idempotent == true, outs[2].status == 200) end })
    -- a body-less request that is not idempotent gets a connection of its own
    case("GET idempotent=" .. tostring(idem), {
      calls = { { method = "GET", path = "ok/g", idempotent = idempotent },
                { method = "GET", path = "ok/g", idempotent = idempotent } },
      anchor = function(_, reached) assert.equal(idempotent == false, reached[1].conn ~= reached[2].conn) end })
  end
  -- headers: the caller's (copied or their own), the correlation header (given, a number,
  -- generated, or over the caller's header of that name), json's Content-Type and Accept
  for _, own in ipairs { false, true } do
    case("json headers own=" .. tostring(own), {
      calls = { { method = "POST", path = "ok/h", body = '{"a":1}', json = true, own_headers = own or nil,
                  headers = { accept = "text/plain", ["X-A"] = "1", ["X-Correlation-Id"] = "callers" },
                  correlation_id = "corr-1" } },
      anchor = function(outs, reached)
        local h = reached[1].headers
        assert.equal("corr-1", h["x-correlation-id"])
        assert.equal("text/plain", h.accept)
        assert.equal("application/json", h["content-type"])
        assert.equal("corr-1", outs[1].correlation_id)
      end })
    case("generated correlation id own=" .. tostring(own), {
      calls = { { method = "POST", path = "ok/u", body = "x=1", own_headers = own or nil,
                  headers = { ["Content-Type"] = "text/plain" } },
                { method = "GET", path = "ok/u", json = true, correlation_id = 12345 } },
      anchor = function(outs, reached)
        assert.truthy(outs[1].correlation_id:find(UUID))
        assert.equal(outs[1].correlation_id, reached[1].headers["x-correlation-id"])
        assert.equal("text/plain", reached[1].headers["content-type"])
        assert.equal("*/*", reached[1].headers.accept)
        assert.equal("12345", reached[2].headers["x-correlation-id"])
        assert.equal("application/json", reached[2].headers.accept)
        assert.is_nil(reached[2].headers["content-type"])
      end })
  end
  case("array headers and json", {
    calls = { { method = "PUT", path = "ok/a", body = "{}", json = true,
                headers = { "Accept: text/html", ["Content-type"] = "application/x" } } },
    anchor = function(_, reached)
      assert.equal("PUT", reached[1].method)
      assert.equal("application/x", reached[1].headers["content-type"])
    end })
  -- per-call timeouts: the call's own over the transport's 5 s
  case("hang timeout", {
    calls = { { method = "POST", path = "hang/t", body = "{}", timeout = 0.3 } },
    anchor = function(outs) assert.equal("timeout", outs[1].code); assert.truthy(outs[1].elapsed < 2) end })
  case("hang read_timeout", {
    calls = { { method = "POST", path = "hang/r", body = "{}", read_timeout = 0.2 } },
    anchor = function(outs) assert.truthy(outs[1].message:find("read_timeout", 1, true)) end })
  -- a TLS handshake the plain port never answers: connect_timeout's wait, within the call's
  case("TLS handshake connect_timeout", {
    calls = { { method = "GET", base = TLS_PLAIN, path = "hang/c", timeout = 4, connect_timeout = 0.2 } },
    anchor = function(outs) assert.equal("connect_timeout", outs[1].code); assert.truthy(outs[1].elapsed < 2) end })
  return cases
end

-- Where a request with a field of the wrong type is made, what it gives and what both ways
-- must agree on.
local WRONG_TYPE_PLACES = {
  -- a plain call raises, in the request table's words (where it was raised differs)
  { run = function(t, r)
      local ok, e = pcall(t.request, t, r)
      assert.is_false(ok)
      return (tostring(e):gsub("^[^:]*:%d+: ", ""))
    end,
    check = function(outs)
      assert.equal(outs[1], outs[2])
      assert.truthy(outs[1]:find("bad argument #1 to 'request'", 1, true), outs[1])
    end },
  -- in a paykit.loop: the same outcome with and without the positional start (a start that
  -- raised goes the general way)
  { run = function(t, r)
      local got = in_loop { function() return t:request(r) end }
      local a, b = got[1][1], got[1][2]
      return { a == nil, (tostring(type(b) == "table" and b.message or b):gsub("^[^:]*:%d+: ", "")),
        type(b) == "table" and b.code or nil }
    end,
    check = function(outs) assert.same(outs[1], outs[2]) end },
}

describe("paykit.http direct first try", function()
  local f
  setup(function() f = fault.start(nginx.root()) end)
  teardown(function() if f then f.stop() end end)

  it("passes every request option on as the request table does", function()
    for _, c in ipairs(direct_cases()) do
      local seen = {}
      -- direct, general (send_once replaced), in a paykit.loop (the wire loop's positional
      -- start) and in a paykit.loop with send_once replaced (request tables)
      for _, mode in ipairs { { false, false }, { true, false }, { false, true }, { true, true } } do
        local general, looped = mode[1], mode[2]
        local t = http.new { transport = "wire", retry = false, timeout = 5, connect_timeout = 5 }
        if general then t.send_once = function(self, r) return http.send_once(self, r) end end
        f.reset()
        local outs, fns = {}, {}
        for i, q in ipairs(c.calls) do
          fns[i] = function()
            local r = {}
            for k, v in pairs(q) do r[k] = v end
            r.path, r.base = nil, nil
            r.url = (q.base or PLAIN) .. q.path .. "/" .. i
            if q.headers then
              r.headers = {}
              for k, v in pairs(q.headers) do r.headers[k] = v end
            end
            local t0 = http.now()
            local res, err = t:request(r)
            local o = outcome(res, err)
            o.correlation_id = res and res.correlation_id or err.correlation_id
            o.elapsed = http.now() - t0
            return o
          end
        end
        if looped then
          local got, positional = in_loop(fns)
          for i = 1, #fns do outs[i] = got[i][1] end
          -- the loop's path took every call's fields as arguments, only without send_once replaced
          assert.equal(general and 0 or #fns, positional, c.name)
        else
          local n = general_calls(function() for i = 1, #fns do outs[i] = fns[i]() end end)
          -- the direct first try served every call without a per-call timeout (a failure it
          -- hands on); none with send_once replaced
          local timed = 0
          for _, q in ipairs(c.calls) do
            if q.timeout or q.connect_timeout or q.send_timeout or q.read_timeout then timed = timed + 1 end
          end
          assert.equal(general and #fns or timed, n.fresh, c.name)
          if general then assert.equal(0, n.handed, c.name) end
        end
        t:close()
        local reached, conns, nconns = {}, {}, 0
        for _, q in ipairs(f.log().requests) do
          if not conns[q.conn] then nconns = nconns + 1; conns[q.conn] = nconns end
          reached[#reached + 1] = { method = q.method, path = q.path, conn = conns[q.conn], headers = q.headers,
            size = q.size }
        end
        c.anchor(outs, reached)
        for i, o in ipairs(outs) do
          o.elapsed = nil
          -- a generated id differs per call: the same when it is the one the server got
          if type(o.correlation_id) == "string" and o.correlation_id:find(UUID) then
            for _, q in ipairs(reached) do
              if q.headers["x-correlation-id"] == o.correlation_id then q.headers["x-correlation-id"] = "uuid" .. i end
            end
            o.correlation_id = "uuid" .. i
          end
        end
        seen[#seen + 1] = { outs = outs, reached = reached }
      end
      for i = 2, #seen do assert.same(seen[1], seen[i], c.name .. " mode " .. i) end
    end
  end)

  it("hands a first attempt that is not final to the general way, which does not send it again", function()
    -- (cell, idempotent, attempts the server must see, the outcome's status or error code)
    for _, c in ipairs {
      { "s503", true, 3, 503 }, { "s503", false, 1, 503 }, { "s503", nil, 1, 503 }, { "refused", false, 0, "connect" },
      { "reset_mid", false, 1, "recv" }, { "reset_mid", true, 3, "recv" }, { "ok", true, 1, 200 },
    } do
      local cell, idempotent, sends, want = c[1], c[2], c[3], c[4]
      local seen = {}
      for _, general in ipairs { false, true } do
        local t = http.new { transport = "wire", timeout = 2, sleep = function() end,
          retry = { attempts = 3, base_delay = 0.001, max_delay = 0.002 } }
        if general then t.send_once = function(self, r) return http.send_once(self, r) end end
        f.reset()
        local url = cell == "refused" and REFUSED or (PLAIN .. cell .. "/h")
        local res, err
        local n = general_calls(function()
          res, err = t:request { method = "POST", url = url, body = "{}", idempotent = idempotent }
        end)
        t:close()
        local final = res ~= nil and not (idempotent and res.status == 503)
        assert.same(general and { fresh = 1, handed = 0 } or { fresh = 0, handed = final and 0 or 1 }, n, cell)
        assert.equal(want, res and res.status or err.code, cell)
        -- every attempt carried the one correlation id the outcome names
        local id = res and res.correlation_id or err.correlation_id
        assert.truthy(id:find(UUID), cell)
        local got = f.log().requests
        assert.equal(sends, #got, cell)
        for _, q in ipairs(got) do assert.equal(id, q.headers["x-correlation-id"], cell) end
        seen[#seen + 1] = { outcome(res, err), #got }
      end
      assert.same(seen[1], seen[2], cell)
    end
  end)

  it("raises for a field of the wrong type in the request table's words", function()
    for _, bad in ipairs {
      { url = 42 }, { method = 5 }, { method = "PO ST" }, { body = {} }, { body = false }, { headers = "X-A: 1" },
      { headers = { ["X:A"] = "1" } }, { headers = { ["X-A"] = "v\r\nX-B: w" } }, { idempotent = 1 }, { url = PLAIN .. "\0" },
    } do
      -- each way (direct, general: send_once replaced) of each place: the same outcome
      for _, place in ipairs(WRONG_TYPE_PLACES) do
        local outs = {}
        for _, general in ipairs { false, true } do
          local t = http.new { transport = "wire", retry = false }
          if general then t.send_once = function(self, r) return http.send_once(self, r) end end
          local r = { method = "POST", url = PLAIN .. "ok/bad", body = "{}" }
          for k, v in pairs(bad) do r[k] = v end
          outs[#outs + 1] = place.run(t, r)
          t:close()
        end
        place.check(outs)
      end
    end
  end)
end)

describe("paykit.http inline send against send_once", function()
  local f
  setup(function() f = fault.start(nginx.root()) end)
  teardown(function() if f then f.stop() end end)

  for _, transport in ipairs { "wire", "curl" } do
    it("gives the same answers, errors and server record (" .. transport .. ")", function()
      -- (general, watched, in a paykit.loop)
      local modes = { { false, false }, { true, false }, { false, true }, { true, true },
                      { false, false, true }, { false, true, true }, { true, false, true } }
      local cases = cells.compare(modes, function(mode, cell, variant, n)
        local c = cells.case(cell, variant, n, PLAIN, REFUSED)
        local req = { method = c.method, url = c.url, body = c.body, op = "spec.fast", idempotent = c.idempotent,
          json = variant == 2 or nil, timeout = variant == 3 and 0.35 or nil,
          read_timeout = variant == 4 and 0.3 or nil }
        local t = make(transport, mode[1], mode[2])
        f.reset()
        local outs, fns = {}, {}
        for i = 1, c.calls do
          fns[i] = function()
            local r = {}
            for k, v in pairs(req) do r[k] = v end
            r.headers = cells.headers(n)
            if i == 2 and cell == "idle_close" then require("socket").sleep(0.5) end
            return outcome(t:request(r))
          end
        end
        if mode[3] then
          local got = in_loop(fns)
          for i = 1, c.calls do outs[i] = got[i][1] end
        else
          for i = 1, c.calls do outs[i] = fns[i]() end
        end
        t:close()
        local log = f.log()
        local reached = {}
        for _, q in ipairs(log.requests) do reached[#reached + 1] = q.cell .. " " .. q.method .. " " .. q.path end
        return { outs = outs, reached = reached }
      end)
      assert.equal(#cells.CELLS * cells.VARIANTS, cases)
    end)
  end
end)

-- The ids of an answer the direct first try got: the provider's request id (a header or a JSON
-- member) and the correlation id, on the answer and noted for the result or error built next in
-- that coroutine, as the general way gives them.
local IDS_PORT = 18884
local IDS_CONF = [[
  server {
    listen 127.0.0.1:${PORT};
    location = /answer { content_by_lua_block {
      if not ngx.var.arg_noid then ngx.header["X-Request-Id"] = "srv-" .. ngx.var.request_id end
      ngx.header["X-Trace"] = "trace-1"
      ngx.header["Content-Type"] = "application/json"
      ngx.say(require("cjson").encode { rid = "json-rid-1", correlation = ngx.req.get_headers()["x-correlation-id"] })
    } }
  }
]]

describe("paykit.http direct first try's answer ids", function()
  local gateway = require "paykit.gateway"
  local errors = require "paykit.errors"
  local srv
  setup(function() srv = nginx.start("fastpath-ids", IDS_CONF, { PORT = IDS_PORT }) end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function() errors.take_ids() end)

  it("are those the general way gives, on the answer and on the result and error built next", function()
    local base = "http://127.0.0.1:" .. IDS_PORT .. "/answer"
    for _, o in ipairs {
      {}, { request_id_headers = { "X-Trace" } }, { request_id_headers = { "X-None", "X-Nor", "X-Trace" } },
      { request_id_headers = false }, { request_id_field = "rid" }, { request_id_headers = false, request_id_field = "rid" },
      { correlation_header = false },
    } do
      for _, q in ipairs { { url = base }, { url = base .. "?noid=1", json = true }, { url = base, correlation_id = "corr-7" } } do
        local seen = {}
        for _, mode in ipairs { { false, false }, { true, false }, { false, true }, { true, true } } do
          local general, in_co = mode[1], mode[2]
          local opts = { transport = "wire", retry = false }
          for k, v in pairs(o) do opts[k] = v end
          local t = http.new(opts)
          if general then t.send_once = function(self, r) return http.send_once(self, r) end end
          local function run()
            local got = {}
            for i = 1, 2 do
              local res = assert(t:request { url = q.url, json = q.json, correlation_id = q.correlation_id })
              local sent = require("cjson").decode(res.body).correlation
              got[i] = { request_id = res.request_id, correlation_id = res.correlation_id, json = res.json ~= nil,
                sent = sent ~= nil and sent == res.correlation_id }
              -- a validation error takes no ids; the result (first) or the provider error
              -- (second) built next carries the answer's
              local v = errors.validation("x", "invalid", "x")
              assert.is_nil(v.request_id); assert.is_nil(v.correlation_id)
              local built = i == 1 and gateway.result { status = "paid" } or errors.provider { code = "declined", message = "no" }
              assert.equal(res.request_id, built.request_id)
              assert.equal(res.correlation_id, built.correlation_id)
              assert.is_nil(select(2, errors.take_ids())) -- taken
            end
            return got
          end
          local got
          local n = general_calls(function()
            if in_co then
              local co = coroutine.create(run)
              local ok, r = coroutine.resume(co)
              assert(ok, r)
              got = r
            else
              got = run()
            end
          end)
          t:close()
          -- the direct first try served both calls, and nothing of the coroutine's answer
          -- reached the main thread (nor the other way)
          assert.equal(general and 2 or 0, n.fresh)
          assert.is_nil(select(2, errors.take_ids()))
          for i, g in ipairs(got) do
            -- the server's id differs per request, a generated one per call
            if g.request_id and g.request_id:find("^srv%-%x+$") then g.request_id = "srv-id" end
            if type(g.correlation_id) == "string" and g.correlation_id:find(UUID) then g.correlation_id = "uuid" end
            if o.correlation_header ~= false then assert.truthy(g.correlation_id, i) end
          end
          seen[#seen + 1] = got
        end
        for i = 2, #seen do assert.same(seen[1], seen[i], "mode " .. i) end
        -- the anchors: what each option reads
        local g = seen[1][1]
        local names = o.request_id_headers
        if names == nil and q.url == base then assert.equal("srv-id", g.request_id)
        elseif names and names[#names] == "X-Trace" then assert.equal("trace-1", g.request_id)
        elseif o.request_id_field then assert.equal("json-rid-1", g.request_id)
        else assert.is_nil(g.request_id) end
        if o.correlation_header == false then
          assert.is_false(g.sent)
          if q.correlation_id then assert.equal("corr-7", g.correlation_id) else assert.is_nil(g.correlation_id) end
        else
          assert.is_true(g.sent)
          assert.equal(q.correlation_id or "uuid", g.correlation_id)
        end
        assert.equal(q.json == true, g.json)
      end
    end
  end)
end)
