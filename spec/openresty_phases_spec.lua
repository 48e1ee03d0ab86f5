-- paykit inside a real nginx: a request from a phase without cosockets (log, header_filter,
-- body_filter, set, init_worker)
-- is refused with a config error naming the phase and the opt-in, and nothing is sent; with
-- allow_blocking (per instance, per request, or one call through paykit.runtime.allow_blocking) it is
-- sent with libcurl; from a content handler it goes over a cosocket and never blocks the
-- worker: another request is answered while a slow call is in flight.
-- Ports: 18840 the front nginx (one worker), 18841 a second nginx, the upstream of the calls
-- that are allowed to block (a blocked worker cannot answer itself).
local nginx = require "spec.support.nginx"
local core = require "paykit.core"
local cjson = require "cjson"

local FRONT, UP = 18840, 18841

local UPSTREAM = [[
  lua_shared_dict hits 1m;
  server {
    listen 127.0.0.1:${PORT};
    location = /count { content_by_lua_block { ngx.shared.hits:incr("n", 1, 0); ngx.say("counted") } }
    location = /hits  { content_by_lua_block { ngx.say(ngx.shared.hits:get("n") or 0) } }
  }
]]

local FRONT_CONF = [[
  lua_shared_dict results 1m;
  lua_socket_log_errors off;
  init_by_lua_block {
    -- what a call from any phase made: recorded in the shared dict for the spec to read
    function record(key, res, err)
      local v
      if res then v = { status = res.status, body = res.body }
      else
        v = { kind = err.kind, code = err.code, field = err.field, message = err.message }
        ngx.log(ngx.WARN, "paykit refused (", key, "): ", tostring(err))
      end
      ngx.shared.results:set(key, require("cjson").encode(v))
    end
    function transport(opts)
      opts = opts or {}
      opts.retry = false; opts.timeout = 5
      return require("paykit.http").new(opts)
    end
  }
  init_worker_by_lua_block {
    record("init_worker", transport():request { url = "http://127.0.0.1:${PORT}/count", op = "spec.init_worker" })
  }
  server {
    listen 127.0.0.1:${PORT};
    location = /count { content_by_lua_block { ngx.shared.results:incr("front_hits", 1, 0); ngx.say("counted") } }
    location = /result { content_by_lua_block { ngx.say(ngx.shared.results:get(ngx.var.arg_key) or "") } }

    location = /log-call {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { record("log", transport():request { url = "http://127.0.0.1:${PORT}/count", op = "spec.log" }) }
    }
    location = /header-filter-call {
      content_by_lua_block { ngx.say("ok") }
      header_filter_by_lua_block {
        record("header_filter", transport():request { url = "http://127.0.0.1:${PORT}/count", op = "spec.hf" })
      }
    }
    location = /body-filter-call {
      content_by_lua_block { ngx.say("ok") }
      body_filter_by_lua_block {
        if ngx.arg[2] then record("body_filter", transport():request { url = "http://127.0.0.1:${PORT}/count", op = "spec.bf" }) end
      }
    }
    location = /set-call {
      set_by_lua_block $made {
        record("set", transport():request { url = "http://127.0.0.1:${PORT}/count", op = "spec.set" })
        return "done"
      }
      content_by_lua_block { ngx.say(ngx.var.made) }
    }
    location = /log-per-call {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        record("per_call", transport():request { url = "http://127.0.0.1:${UP}/count", allow_blocking = true })
      }
    }
    location = /log-moka {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        local gw = require("paykit").moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
          base_url = "http://127.0.0.1:${PORT}/moka", retry = false }
        record("moka", gw:status("order-1"))
      }
    }
    location = /log-allowed {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        record("allowed", transport({ allow_blocking = true }):request { url = "http://127.0.0.1:${UP}/count" })
      }
    }
    location = /log-scoped {
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        local t = transport()
        record("scoped", require("paykit.runtime").allow_blocking(function()
          return t:request { url = "http://127.0.0.1:${UP}/count" }
        end))
      }
    }

    # The non-blocking pair: /pay-slow calls /slow through paykit from a content handler;
    # /slow answers only once /ping has been answered, and /ping only once /slow has started.
    location = /pay-slow {
      content_by_lua_block {
        local res, err = transport():request { url = "http://127.0.0.1:${PORT}/slow" }
        ngx.say(res and ("status=" .. res.status .. " body=" .. res.body) or ("error=" .. tostring(err)))
      }
    }
    location = /slow {
      content_by_lua_block {
        local d = ngx.shared.results
        d:set("inflight", true)
        for _ = 1, 200 do if d:get("pinged") then break end; ngx.sleep(0.05) end
        ngx.print(d:get("pinged") and "pinged while in flight" or "no ping came")
      }
    }
    location = /ping {
      content_by_lua_block {
        local d = ngx.shared.results
        for _ = 1, 200 do if d:get("inflight") then break end; ngx.sleep(0.05) end
        d:set("pinged", true)
        ngx.say(d:get("inflight") and "pong during the slow call" or "pong, no slow call seen")
      }
    }
  }
]]

describe("paykit in nginx phases", function()
  local front, up, client

  local function get(port, path)
    local res, err = client:request { method = "GET", url = "http://127.0.0.1:" .. port .. path }
    assert(res, err)
    return res
  end

  -- what the phase handler recorded (it runs after the response was sent: wait for it)
  local function result(key)
    for _ = 1, 100 do
      local body = get(FRONT, "/result?key=" .. key).body
      if body:find("%S") then return cjson.decode(body) end
      os.execute("sleep 0.05")
    end
    error("nothing recorded for " .. key .. "\n" .. front:error_log())
  end

  lazy_setup(function()
    client = core.http_client { timeout = 20000 }
    up = nginx.start("phases-upstream", UPSTREAM, { PORT = UP })
    front = nginx.start("phases", FRONT_CONF, { PORT = FRONT, UP = UP })
  end)
  lazy_teardown(function()
    if client then client:close() end
    if front then front:stop() end
    if up then up:stop() end
  end)

  for _, case in ipairs { { "/log-call", "log" }, { "/header-filter-call", "header_filter" },
                          { "/body-filter-call", "body_filter" }, { "/set-call", "set" }, { nil, "init_worker" } } do
    it("refuses a request from the " .. case[2] .. " phase with a config error naming the phase and the opt-in", function()
      if case[1] then assert.are.equal(200, get(FRONT, case[1]).status) end
      local r = result(case[2])
      assert.are.equal("config", r.kind, cjson.encode(r))
      assert.are.equal("blocking_phase", r.code)
      assert.are.equal("allow_blocking", r.field)
      assert.truthy(r.message:find("nginx's " .. case[2] .. " phase", 1, true), r.message)
      assert.truthy(r.message:find("allow_blocking = true", 1, true), r.message)
      -- nothing was sent, and the refusal is in the error log
      assert.is_nil(get(FRONT, "/result?key=front_hits").body:match("%d"))
      assert.truthy(front:error_log():find("paykit refused (" .. case[2] .. "): paykit config error [allow_blocking blocking_phase]", 1, true))
    end)
  end

  it("points init_worker at a timer", function()
    local r = result("init_worker")
    assert.truthy(r.message:find("ngx.timer.at", 1, true), r.message)
  end)

  it("refuses a provider call from the log phase the same way", function()
    get(FRONT, "/log-moka")
    local r = result("moka")
    assert.are.equal("config", r.kind, cjson.encode(r))
    assert.are.equal("blocking_phase", r.code)
    assert.truthy(r.message:find("nginx's log phase", 1, true), r.message)
  end)

  it("sends from the log phase with allow_blocking = true on the instance or the call, and with runtime.allow_blocking", function()
    get(FRONT, "/log-allowed")
    local a = result("allowed")
    assert.are.equal(200, a.status, cjson.encode(a))
    assert.are.equal("counted\n", a.body)
    get(FRONT, "/log-scoped")
    local s = result("scoped")
    assert.are.equal(200, s.status, cjson.encode(s))
    get(FRONT, "/log-per-call")
    local c = result("per_call")
    assert.are.equal(200, c.status, cjson.encode(c))
    assert.are.equal("3", get(UP, "/hits").body:match("%d+"))
  end)

  it("never blocks the worker from a content handler: another request is answered while a slow call is in flight", function()
    local out = client:batch {
      { method = "GET", url = "http://127.0.0.1:" .. FRONT .. "/pay-slow" },
      { method = "GET", url = "http://127.0.0.1:" .. FRONT .. "/ping" },
    }
    assert.is_table(out[1]); assert.is_table(out[2])
    assert.are.equal(200, out[1].status, tostring(out[1].error))
    assert.are.equal("status=200 body=pinged while in flight\n", out[1].body, front:error_log())
    assert.are.equal("pong during the slow call\n", out[2].body)
  end)
end)
