-- The attack suite (ISSUE8, "what must last"): every fault cell of the fault server
-- (spec/support/fault_server.lua) x each provider's charging calls and one idempotent call x
-- each path: wire (paykit.core.wire_client, the default transport outside nginx) and libcurl
-- (transport = "curl"), both in this busted run (Lua 5.4 and LuaJIT through spec/run), libcurl
-- through paykit.loop, paykit.batch, and cosocket (the same calls made inside nginx, reported
-- back as JSON). The server records every request
-- it received; a call that may charge must reach it exactly once (0 where no connection to an
-- HTTP peer was made), whatever the network does. Idempotent calls are retried as designed:
-- 3 attempts after a failure that may have been sent, and on 502/503/504.
local fault = require "spec.support.fault"
local calls = require "spec.support.fault_calls"
local nginx = require "spec.support.nginx"
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local P = fault.PORTS
local FRONT = 18910 -- nginx: /run makes the calls through the cosocket transport
local ATTEMPTS = 3
local RETRY = { attempts = ATTEMPTS, base_delay = 0.01, max_delay = 0.02, deadline = 30 }
local TIMEOUT = 1.5 -- seconds: hang and trickle outlast it

local PLAIN = "http://127.0.0.1:" .. P.http .. "/"

-- Each cell: url, and what a call meets there.
--   sent = false: the request never reaches an HTTP peer (0 requests); retried = whether
--   paykit tries again anyway (never sent: always, except a refused certificate)
--   err = {kind, code} (a per-path code where the transports differ), response = a provider
--   error from reading the answer (code per provider), retry_status = 502/503/504
local CELLS = {
  { "refused", url = "http://127.0.0.1:" .. P.refused .. "/refused", sent = false, err = { "transport", "connect" }, retryable = true },
  { "dns", url = "http://paykit-fault.invalid:" .. P.http .. "/dns", sent = false, err = { "transport", "dns" }, retryable = true },
  { "tls_untrusted", url = "https://localhost:" .. P.untrusted, sent = false, port = P.untrusted,
    err = { "transport", "tls_verify" }, retryable = false },
  { "tls_wronghost", url = "https://localhost:" .. P.wronghost, sent = false, port = P.wronghost,
    err = { "transport", "tls_verify" }, retryable = false },
  -- the server reads the whole request and resets: libcurl mostly reports the receive that
  -- failed, now and then (a loaded machine) the poll of its send phase; either way the request
  -- may have arrived (maybe_sent), a charging call is not retried and reached the server once
  { "reset_before", err = { "transport", "recv" }, code_also = { libcurl = "send" } },
  { "reset_mid", err = { "transport", "recv" } },
  { "hang", err = { "timeout", "timeout" } },
  { "trickle", err = { "timeout", "timeout" } },
  { "s500", response = "5xx" },
  { "s502", response = "5xx", retry_status = true },
  { "s503", response = "5xx", retry_status = true },
  { "s504", response = "5xx", retry_status = true },
  { "garbage", response = "bad" },
  { "truncated", response = "bad" },
  { "oversize", err = { "transport", "too_large" } },
  { "wrong_ct", response = "bad" },
  -- libcurl reads a broken chunk size as a receive error; libhttp-parser (wire) and nginx's
  -- cosocket reader refuse the answer as malformed
  { "bad_chunk", err = { "transport", { libcurl = "recv", cosocket = "protocol", wire = "protocol" } } },
  -- libcurl takes one of the two Content-Lengths and gives the answer to the provider;
  -- libhttp-parser (wire) and cosockets refuse the answer
  { "dup_cl", any_answer_on = { libcurl = true }, err = { "transport", "protocol" } },
  { "bad_status", err = { "transport", "protocol" } },
  -- a reused keep-alive connection closed after the second request was read
  { "drop_second", twice = true, err = { "transport", "recv" } },
  -- the server closes the kept-alive connection while it is idle: every transport notices
  -- before reusing it, and the next call, charging or not, goes out once on a new one
  { "idle_close", twice = true, pause = 0.5, answered = true },
}

-- The provider's code for an answer it could not use.
local RESPONSE_CODE = {
  -- ISSUE9: one HTTP vocabulary (Moka's codes were per status)
  moka = { bad = "moka.invalid_response", s500 = "server_error", s502 = "server_error", s503 = "server_error", s504 = "server_error" },
  mocopay = { bad = "invalid_response", s500 = "server_error", s502 = "server_error", s503 = "server_error", s504 = "server_error" },
  zippy = { bad = "invalid_response", s500 = "server_error", s502 = "server_error", s503 = "server_error", s504 = "server_error" },
}

local case_seq = 0
local function cell_url(cell)
  if cell.twice then
    case_seq = case_seq + 1
    return PLAIN .. cell[1] .. "/case" .. case_seq
  end
  return cell.url or (PLAIN .. cell[1])
end

-- kind: the C transport outside nginx ("wire" or "curl")
local function transport_opts(f, kind)
  return { timeout = TIMEOUT, connect_timeout = TIMEOUT, retry = RETRY, cafile = f.cafile, transport = kind }
end

-- The same options on a paykit.http transport of the wire client (core.wire_client), given to
-- the provider as its transport.
local function wire_opts(f)
  local o = transport_opts(f)
  o.transport = "wire"
  local t = require("paykit.http").new(o)
  assert.are.equal("paykit.wire.client", getmetatable(t:wire_client()).__name)
  return { transport = t }
end

-- The expectation for one call in one cell on one path: requests = what the server must
-- receive (for a twice cell: from the second call), err = nil | {kind, code}, retryable.
local function expect(cell, call, path)
  local e = { requests = 1 }
  if cell.answered or (cell.any_answer_on and cell.any_answer_on[path]) then
    e.any_answer = true
    return e
  end
  local err = cell.err_on and cell.err_on[path] or cell.err
  e.sent = cell.sent ~= false -- what the error message says: may have reached the provider
  if cell.response and not (cell.err_on and cell.err_on[path]) then
    e.kind, e.code = "provider", RESPONSE_CODE[call.provider][cell.response == "bad" and "bad" or cell[1]]
    if call.charging then e.retryable = false end
    if cell.retry_status and not call.charging then e.requests = ATTEMPTS end
    return e
  end
  e.kind = err[1]
  e.code = type(err[2]) == "table" and err[2][path] or err[2]
  e.code_also = cell.code_also and cell.code_also[path] -- another code this path may report
  if cell.sent == false then
    e.requests = 0
    e.retryable = cell.retryable
    return e
  end
  -- may have been sent: never again for a charging call; an idempotent one is retried
  if call.charging and cell.twice and call.bodyless and (path == "libcurl" or path == "wire") then
    -- a body-less charging request never goes out on a reused connection (libcurl and wire):
    -- the second call has a connection of its own, where the fault server answers it
    e.any_answer = true
  elseif call.charging then
    e.retryable = false
  elseif cell.twice then
    -- the transport itself sends an idempotent request again on a new connection, where the
    -- fault server answers it: no transport error is left
    e.requests, e.kind, e.code = 2, nil, nil
    e.any_answer = true
  else
    e.requests, e.retryable = ATTEMPTS, true
  end
  return e
end

local function check(cell, call, path, out, log)
  local e = expect(cell, call, path)
  local o = out[#out]
  local received = 0
  for _, r in ipairs(log.requests) do if r.cell == cell[1] then received = received + 1 end end
  if cell.twice then
    assert.is_true(out[1].ok or out[1].kind == "provider", "the first call was not answered: " .. cjson.encode(out[1]))
    received = received - 1
  end
  local what = call.id .. " in " .. cell[1] .. " (" .. path .. "): " .. cjson.encode(o)
  assert.are.equal(e.requests, received, "requests received for " .. what)
  assert.are_not.equal("raised", o.kind, what)
  if e.any_answer then
    assert.are_not.equal("transport", o.kind, what)
    assert.are_not.equal("timeout", o.kind, what)
  else
    assert.is_false(o.ok, what)
    assert.are.equal(e.kind, o.kind, what)
    if e.code_also == nil or o.code ~= e.code_also then assert.are.equal(e.code, o.code, what) end
    if e.sent ~= nil and (o.kind == "transport" or o.kind == "timeout") then
      assert.are.equal(e.sent, o.maybe_sent, "maybe sent: " .. what)
    end
    if e.retryable ~= nil then assert.are.equal(e.retryable, o.retryable, what) else assert.is_boolean(o.retryable, what) end
  end
  if cell.port then
    -- a refused certificate is final: one connection, never retried
    assert.are.equal(1, log.conns[tostring(cell.port)], "connections for " .. what)
  end
  return received
end

local ran = { libcurl = 0, cosocket = 0, loop = 0, wire = 0, wire_loop = 0 }
local summary = {}

-- label: the name of the path in the spec names and the summary (default: path itself)
local function each_case(path, runner, label)
  label = label or path
  for _, cell in ipairs(CELLS) do
    for _, call in ipairs(calls.list) do
      local name = call.id .. " in cell " .. cell[1] .. " (" .. label .. ")"
      local spec_name = (call.charging and "reaches the server exactly once: " or "is retried as designed: ") .. name
      do
        it(spec_name, function()
          local f = runner.fault()
          f.reset()
          local out = runner.run(call.id, cell_url(cell), cell.twice and 2 or 1, cell.pause)
          local n = check(cell, call, path, out, f.log())
          ran[label] = ran[label] + 1
          summary[#summary + 1] = ("%s %s %s requests=%d %s"):format(label, cell[1], call.id, n,
            out[#out].ok and "ok" or (tostring(out[#out].kind) .. "/" .. tostring(out[#out].code)))
        end)
      end
    end
  end
end

describe("fault cells", function()
  local f, srv

  lazy_setup(function()
    f = fault.start(nginx.root())
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if f then f.stop() end
    local root = nginx.root()
    os.execute("mkdir -p '" .. root .. "/build/test'")
    local out = io.open(root .. "/build/test/fault-summary-" .. (jit and "luajit" or "lua5.4") .. ".txt", "w")
    if out then
      out:write(("cells run: wire %d, libcurl %d, cosocket %d, libcurl through paykit.loop %d, wire through paykit.loop %d\n")
        :format(ran.wire, ran.libcurl, ran.cosocket, ran.loop, ran.wire_loop))
      out:write(table.concat(summary, "\n"), "\n"); out:close()
    end
  end)

  -- The two clients outside nginx, one call at a time: wire (the default) and libcurl; the
  -- describe names and the labels are the clients' names, `kind` is what paykit.http reports
  -- as the client that served the call (and the transport option that asks for it).
  for _, client in ipairs { { name = "wire", kind = "wire" }, { name = "libcurl", kind = "curl" } } do
    describe(client.name, function()
      each_case(client.name, {
        fault = function() return f end,
        run = function(id, url, times, pause)
          local out = calls.run(id, url, transport_opts(f, client.kind), times, pause)
          for _, o in ipairs(out) do assert.are.equal(client.kind, o.client, "the client that served the call") end
          return out
        end,
      })
    end)
  end

  -- The same calls started on a paykit.loop and driven by step(): the loop's transfers (libcurl
  -- socket API) are set up as single requests are, so every expectation of the libcurl path holds.
  describe("libcurl through paykit.loop step", function()
    local loop = require "paykit.loop"
    each_case("libcurl", {
      fault = function() return f end,
      run = function(id, url, times, pause)
        local lp = loop.new()
        local h = lp:start(function() return calls.run(id, url, transport_opts(f, "curl"), times, pause) end)
        while not h:done() do lp:step(0.05) end
        lp:close()
        local out, err = h:result()
        assert(out, err)
        return out
      end,
    }, "loop")
  end)

  -- The wire transport's requests go through the loop's core.wire_loop: the same state machine
  -- as a single wire request, so the wire client's rules hold there (libhttp-parser's verdicts).
  describe("wire through paykit.loop step", function()
    local loop = require "paykit.loop"
    each_case("wire", {
      fault = function() return f end,
      run = function(id, url, times, pause)
        local lp = loop.new()
        local h = lp:start(function() return calls.run(id, url, wire_opts(f), times, pause) end)
        while not h:done() do lp:step(0.05) end
        lp:close()
        local out, err = h:result()
        assert(out, err)
        return out
      end,
    }, "wire_loop")
  end)

  -- paykit.batch runs its tasks on one paykit.loop (shared connections): a charging call on a
  -- dropped keep-alive connection is not resent there either, over libcurl or the wire client.
  -- (the default transport, auto, is the wire loop there too: paykit.http's client_for)
  local function curl_opts(server) return transport_opts(server, "curl") end
  for _, via in ipairs { { "libcurl multi", curl_opts }, { "wire loop", wire_opts }, { "auto: wire loop", transport_opts } } do
    describe("paykit.batch (" .. via[1] .. ")", function()
      local batch = require "paykit.batch"
      for _, call in ipairs(calls.list) do
        local spec_name = "never resends " .. call.id .. " from batch tasks when the reused connection drops"
        if call.charging then
          it(spec_name, function()
            f.reset()
            local urls = {}
            local tasks = {}
            for k = 1, 3 do
              case_seq = case_seq + 1
              urls[k] = PLAIN .. "drop_second/batch" .. case_seq
              tasks[k] = function() return calls.run(call.id, urls[k], via[2](f), 2) end
            end
            local results = batch(tasks, { max_in_flight = 3 })
            local log = f.log()
            for k = 1, 3 do
              local second = results[k][2]
              local what = call.id .. " task " .. k .. ": " .. cjson.encode(second)
              if call.bodyless then
                -- a connection of its own: answered there
                assert.are_not.equal("transport", second.kind, what)
              else
                assert.are.equal("transport", second.kind, what)
                assert.are.equal("recv", second.code, what)
                assert.is_false(second.retryable, what)
              end
              local n = 0
              local prefix = urls[k]:sub(#PLAIN) .. "/"
              for _, r in ipairs(log.requests) do if r.path:sub(1, #prefix) == prefix then n = n + 1 end end
              assert.are.equal(2, n, "requests received for " .. what) -- the answered one and one copy of the second
            end
          end)
        end
      end
    end)
  end

  describe("cosocket inside nginx", function()
    local function start()
      if srv then return end
      local conf = [[
  lua_ssl_trusted_certificate ]] .. f.cafile .. [[;
  lua_ssl_verify_depth 2;
  resolver 127.0.0.1:]] .. P.dns .. [[ ipv6=off;
  resolver_timeout 2s;
  server {
    listen 127.0.0.1:]] .. FRONT .. [[;
    location = /run {
      content_by_lua_block {
        local calls = require "spec.support.fault_calls"
        local a = ngx.req.get_uri_args()
        local out = calls.run(a.id, a.url, { timeout = ]] .. TIMEOUT .. [[, connect_timeout = ]] .. TIMEOUT .. [[,
          retry = { attempts = ]] .. ATTEMPTS .. [[, base_delay = 0.01, max_delay = 0.02, deadline = 30 },
          cafile = ]] .. ("%q"):format(f.cafile) .. [[ }, tonumber(a.times), tonumber(a.pause))
        for _, o in ipairs(out) do o.transport = require("paykit.cosocket").available() and "cosocket" or "?" end
        ngx.header["Content-Type"] = "application/json"
        ngx.say(require("cjson").encode(out))
      }
    }
  }
]]
      srv = nginx.start("fault", conf, { PORTS = { FRONT }, WORKERS = 1 })
    end
    local function enc(s) return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
    each_case("cosocket", {
      fault = function() start(); return f end,
      run = function(id, url, times, pause)
        local chunks = {}
        local _, status = http.request { url = ("http://127.0.0.1:%d/run?id=%s&url=%s&times=%d&pause=%s"):format(FRONT,
          enc(id), enc(url), times, tostring(pause or 0)),
          sink = ltn12.sink.table(chunks) }
        assert.are.equal(200, status, table.concat(chunks))
        local out = cjson.decode(table.concat(chunks))
        for _, o in ipairs(out) do assert.are.equal("cosocket", o.transport) end
        return out
      end,
    })
  end)
end)
