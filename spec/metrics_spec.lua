-- paykit.metrics: the transport's hooks as Prometheus text exposition. In process, against a
-- real nginx (port 18855: 200, 503 and a closed port 18859); and the example shop's /metrics
-- (two workers, one lua_shared_dict) scraped after purchases through the sandbox.
package.path = "./examples/openresty/lua/?.lua;./examples/openresty/lua/?/init.lua;./examples/?.lua;" .. package.path
local nginx = require "spec.support.nginx"
local metrics = require "paykit.metrics"
local paykit = require "paykit"
local http = require "paykit.http"
local core = require "paykit.core"

local PORT, CLOSED, SHOP_PORT = 18855, 18859, 18856

-- A parser of the text format (0.0.4): returns {types = {name = kind}, help = {name = text},
-- samples = {{name=, labels={k = v}, value=}...}}; raises on a line it cannot read.
local function parse(text)
  local out = { types = {}, help = {}, samples = {} }
  for line in text:gmatch("[^\n]+") do
    local name, rest = line:match("^# HELP (%S+) (.*)$")
    if name then out.help[name] = rest
    else
      local tname, kind = line:match("^# TYPE (%S+) (%a+)$")
      if tname then out.types[tname] = kind
      else
        local sname, body, value = line:match('^([%a_:][%w_:]*)(%b{}) (%S+)$')
        if not sname then sname, value = line:match("^([%a_:][%w_:]*) (%S+)$"); body = "{}" end
        assert(sname, "not a sample line: " .. line)
        local labels = {}
        local inner = body:sub(2, -2)
        local pos = 1
        while pos <= #inner do
          local k, start = inner:match('^([%a_][%w_]*)="()', pos)
          assert(k, "bad labels in: " .. line)
          local chars, i = {}, start
          while true do
            local c = inner:sub(i, i)
            assert(c ~= "", "unterminated label value in: " .. line)
            if c == "\\" then
              local e = inner:sub(i + 1, i + 1)
              chars[#chars + 1] = (e == "n") and "\n" or e
              i = i + 2
            elseif c == '"' then break
            else chars[#chars + 1] = c; i = i + 1 end
          end
          labels[k] = table.concat(chars)
          pos = i + 1
          if inner:sub(pos, pos) == "," then pos = pos + 1 end
        end
        local n = value == "+Inf" and math.huge or tonumber(value)
        assert(n, "bad value in: " .. line)
        out.samples[#out.samples + 1] = { name = sname, labels = labels, value = n }
      end
    end
  end
  return out
end

-- The value of the one sample of name whose labels include want (nil when there is none).
local function value(m, name, want)
  local found
  for _, s in ipairs(m.samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(want) do if s.labels[k] ~= v then ok = false end end
      if ok then
        assert.is_nil(found, "two samples match " .. name)
        found = s.value
      end
    end
  end
  return found
end

-- Checks the histogram of one series: cumulative buckets ending in +Inf == _count.
local function check_histogram(m, want)
  local last, inf = -1, nil
  for _, s in ipairs(m.samples) do
    if s.name == "paykit_request_duration_seconds_bucket" then
      local ok = true
      for k, v in pairs(want) do if s.labels[k] ~= v then ok = false end end
      if ok then
        assert.is_true(s.value >= last, "buckets must be cumulative")
        last = s.value
        if s.labels.le == "+Inf" then inf = s.value end
      end
    end
  end
  assert.are.equal(value(m, "paykit_request_duration_seconds_count", want), inf)
  return inf
end

describe("paykit.metrics", function()
  local srv
  lazy_setup(function()
    srv = nginx.start("metrics", [[
      server {
        listen 127.0.0.1:${PORT};
        location = /ok   { return 200 "ok"; }
        location = /busy { return 503 "busy"; }
      }
    ]], { PORT = PORT })
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("counts attempts by provider, operation and outcome, retries, and their latency", function()
    local m = metrics.new()
    local t = http.new { hooks = m:hooks(), retry = { attempts = 3, base_delay = 0, max_delay = 0 } }
    local base = "http://127.0.0.1:" .. PORT
    for _ = 1, 2 do assert(t:request { url = base .. "/ok", op = "moka.status" }) end
    assert(t:request { url = base .. "/busy", op = "moka.capture", idempotent = true }) -- 3 attempts
    assert(t:request { url = base .. "/busy", op = "zippy.create_seller" })           -- 1 attempt
    assert.is_nil(t:request { url = "http://127.0.0.1:" .. CLOSED .. "/", op = "mocopay.verify_payment" })

    local text = m:render()
    local p = parse(text)
    assert.are.equal("counter", p.types.paykit_requests_total)
    assert.are.equal("counter", p.types.paykit_retries_total)
    assert.are.equal("histogram", p.types.paykit_request_duration_seconds)
    assert.is_string(p.help.paykit_requests_total)
    assert.are.equal(2, value(p, "paykit_requests_total", { provider = "moka", operation = "status", outcome = "2xx" }))
    assert.are.equal(3, value(p, "paykit_requests_total", { provider = "moka", operation = "capture", outcome = "5xx" }))
    assert.are.equal(2, value(p, "paykit_retries_total", { provider = "moka", operation = "capture" }))
    assert.are.equal(1, value(p, "paykit_requests_total", { provider = "zippy", operation = "create_seller", outcome = "5xx" }))
    -- a refused connection is retried (it never reached the server): all its attempts count
    local refused = value(p, "paykit_requests_total", { provider = "mocopay", operation = "verify_payment", outcome = "transport" })
    assert.are.equal(3, refused)
    assert.is_nil(value(p, "paykit_retries_total", { provider = "zippy", operation = "create_seller" }))
    assert.are.equal(2, check_histogram(p, { provider = "moka", operation = "status" }))
    assert.are.equal(3, check_histogram(p, { provider = "moka", operation = "capture" }))
    assert.is_true(value(p, "paykit_request_duration_seconds_sum", { provider = "moka", operation = "status" }) >= 0)
    -- no URL, body or reference in any label
    assert.is_nil(text:find("127.0.0.1", 1, true))
  end)

  it("escapes label values and keeps a caller's own hooks", function()
    local m = metrics.new { buckets = { 0.1, 1 } }
    local seen = 0
    local hooks = m:hooks { after = function() seen = seen + 1 end }
    hooks.after { op = 'odd."op\\', status = 200, elapsed = 0.5, attempt = 1 }
    assert.are.equal(1, seen)
    local p = parse(m:render())
    assert.are.equal(1, value(p, "paykit_requests_total", { provider = "odd", operation = '"op\\' }))
    assert.are.equal(0, value(p, "paykit_request_duration_seconds_bucket", { provider = "odd", le = "0.1" }))
    assert.are.equal(1, value(p, "paykit_request_duration_seconds_bucket", { provider = "odd", le = "1" }))
  end)

  it("refuses bad buckets and a shared dict that is not there", function()
    local ok, err = pcall(metrics.new, { buckets = { 1, 0.5 } })
    assert.is_false(ok)
    assert.are.equal("buckets", err.field)
    ok, err = pcall(metrics.new, { dict = "paykit_metrics" }) -- outside nginx: no ngx.shared
    assert.is_false(ok)
    assert.are.equal("dict", err.field)
    assert.truthy(err.message:find("lua_shared_dict paykit_metrics", 1, true))
  end)

  it("is reachable as paykit.metrics", function()
    assert.are.equal(metrics, paykit.metrics)
  end)
end)

describe("the example shop's /metrics (two workers, one shared dict)", function()
  local sb = require "spec.support.sandbox"
  local server = require "shop.server"
  local buyers = require "shop.buyer"
  local buyer, client

  lazy_setup(function()
    local sandbox = sb.start()
    local shop = server.start { port = SHOP_PORT, sandbox = sandbox, workers = 2 }
    buyer = buyers.new { shop = shop, sandbox = sandbox }
    client = core.http_client { timeout = 10000 }
  end)
  lazy_teardown(function()
    if buyer then buyer:close() end
    if client then client:close() end
    server.stop { port = SHOP_PORT }
    sb.stop()
  end)

  local function scrape()
    local res = assert(client:request { method = "GET", url = "http://127.0.0.1:" .. SHOP_PORT .. "/metrics" })
    assert.are.equal(200, res.status)
    assert.truthy(res.headers["content-type"]:find("text/plain; version=0.0.4", 1, true))
    return parse(res.body)
  end

  it("reports every provider call of every worker", function()
    local before = scrape()
    assert.is_nil(value(before, "paykit_requests_total", { provider = "moka", operation = "start_3d" }))
    local trips = { buyer:moka("approve"), buyer:moka("approve"), buyer:moka("decline") }
    for _, trip in ipairs(trips) do assert.are.equal(302, trip.buy_status) end
    -- every scrape, whichever worker answers it, sees the same totals: one 3D start per purchase
    for _ = 1, 6 do
      local p = scrape()
      assert.are.equal(3, value(p, "paykit_requests_total", { provider = "moka", operation = "start_3d", outcome = "2xx" }))
      assert.are.equal(3, check_histogram(p, { provider = "moka", operation = "start_3d" }))
    end
  end)
end)
