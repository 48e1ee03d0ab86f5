-- MoCoPay notifications delivered many times at once (paykit.batch tasks, nginx light threads):
-- exactly one delivery of a payment is reported with duplicate = false, whatever the
-- interleaving; the session notice and the transaction notice of one payment are one payment;
-- a delivery that could not be verified leaves no mark, so a later genuine one is processed.
local sb = require "spec.support.sandbox"
local core = require "paykit.core"
local paykit = require "paykit"
local sim = require "paykit.sandbox.mocopay"

local base

local function uniq() return core.random_hex(6) end

local function gateway(opts)
  local o = { api_key = sim.credentials.api_key, api_secret = sim.credentials.api_secret, base_url = base .. "/mocopay",
              retry = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return paykit.mocopay(o)
end

local function as_request(e)
  return { method = e.method, path = e.uri:match("^[^?]*"), query = e.query }
end

-- A paid one-time payment; returns its two notifications (session first, then transaction).
local function paid(gw, n)
  local r = assert(gw:purchase { pid = "12000", return_url = base .. "/_sink/dret-" .. n, notify_url = base .. "/_sink/dn-" .. n })
  local trn = r.redirect_url:match("trn=(%x+)")
  assert.equal(200, sb.post_json("/mocopay/_sandbox/act", { trn = trn, action = "send-sms" }).status)
  local log = sb.sink_log("dn-" .. n, 2)
  assert.equal(2, #log)
  local session, txn
  for _, e in ipairs(log) do
    if e.query:find("transactionId=", 1, true) then txn = e else session = e end
  end
  return session, txn, r
end

local function count_fresh(results, errs)
  local fresh, dup = 0, 0
  for i = 1, #results do
    local r = results[i]
    assert.truthy(r, tostring(errs[i]))
    assert.equal("paid", r.status)
    if r.duplicate then dup = dup + 1 else fresh = fresh + 1 end
  end
  return fresh, dup
end

describe("mocopay notification duplicates", function()
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("reports one of 52 concurrent deliveries of a notice as new (paykit.batch)", function()
    local gw = gateway()
    local session = paid(gw, uniq())
    local tasks = {}
    for i = 1, 52 do tasks[i] = function() return gw:notification(as_request(session)) end end
    local results, errs = paykit.batch(tasks, { max_in_flight = 52 })
    local fresh, dup = count_fresh(results, errs)
    io.stderr:write(string.format("\n[duplicate mocopay] batch: %d of 52 duplicate=false, %d duplicate=true\n", fresh, dup))
    assert.equal(1, fresh)
    assert.equal(51, dup)
    -- the duplicates carry the first delivery's result
    for i = 1, 52 do assert.equal(results[1].provider_reference, results[i].provider_reference) end
  end)

  it("agrees on the first with few requests in flight too", function()
    local gw = gateway()
    local session = paid(gw, uniq())
    local tasks = {}
    for i = 1, 30 do tasks[i] = function() return gw:notification(as_request(session)) end end
    local results, errs = paykit.batch(tasks, { max_in_flight = 3 })
    local fresh, dup = count_fresh(results, errs)
    assert.equal(1, fresh)
    assert.equal(29, dup)
  end)

  it("takes the session notice and the transaction notice of one payment as one payment", function()
    local gw = gateway()
    local session, txn = paid(gw, uniq())
    local first = assert(gw:notification(as_request(session)))
    assert.is_false(first.duplicate)
    local second = assert(gw:notification(as_request(txn)))
    assert.is_true(second.duplicate)
    assert.equal("paid", second.status)
    -- and at once, in either order
    local g2 = gateway()
    local tasks = {}
    for i = 1, 20 do
      local e = i % 2 == 0 and session or txn
      tasks[i] = function() return g2:notification(as_request(e)) end
    end
    local results, errs = paykit.batch(tasks, { max_in_flight = 20 })
    local fresh, dup = count_fresh(results, errs)
    assert.equal(1, fresh)
    assert.equal(19, dup)
  end)

  it("reports a later charge of a subscription as a new payment", function()
    local gw = gateway()
    local n = uniq()
    local r = assert(gw:purchase { pid = "SUB-D", return_url = base .. "/_sink/dret-" .. n, notify_url = base .. "/_sink/dn-" .. n })
    local trn = r.redirect_url:match("trn=(%x+)")
    local done = sb.post_json("/mocopay/_sandbox/act", { trn = trn, action = "send-sms" }).json
    local log = sb.sink_log("dn-" .. n, 2)
    local a = assert(gw:notification(as_request(log[1])))
    local b = assert(gw:notification(as_request(log[2])))
    assert.is_false(a.duplicate)
    assert.is_true(b.duplicate)
    assert.equal(200, sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. done.sessionId).status)
    log = sb.sink_log("dn-" .. n, 4)
    local c = assert(gw:notification(as_request(log[3])))
    local d = assert(gw:notification(as_request(log[4])))
    assert.is_false(c.duplicate)
    assert.is_true(d.duplicate)
    assert.equal(2, c.payment.series)
  end)

  it("releases a delivery that could not be verified, so the next one is processed", function()
    local gw = gateway()
    local session, _, r = paid(gw, uniq())
    local sid = session.query:match("sessionId=(%x+)")
    -- verifyPayment answers for another session: refused, and not remembered
    local other = gateway():purchase { pid = "12000" }
    local osid = sb.post_json("/mocopay/_sandbox/act", { trn = other.redirect_url:match("trn=(%x+)"), action = "cancel" }).json.sessionId
    assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sid, as = osid }).status)
    local tasks = {}
    for i = 1, 10 do tasks[i] = function() return gw:notification(as_request(session)) end end
    local results, errs = paykit.batch(tasks, { max_in_flight = 10 })
    for i = 1, 10 do
      assert.is_nil(results[i])
      assert.equal("session_mismatch", errs[i].code)
    end
    assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sid }).status)
    local ok = assert(gw:notification(as_request(session)))
    assert.is_false(ok.duplicate)
    assert.equal("paid", ok.status)
    assert.equal(r.reference, ok.reference)
    assert.is_true(assert(gw:notification(as_request(session))).duplicate)
  end)

  it("reports one of 52 concurrent deliveries as new inside nginx (light threads)", function()
    local nginx = require "spec.support.nginx"
    local port = 18871
    local gw = gateway()
    local session = paid(gw, uniq())
    local srv = nginx.start("mocopay_duplicate_spec", [[
      server {
        listen 127.0.0.1:${PORT};
        location = /run { content_by_lua_block {
          local paykit = require "paykit"
          local sim = require "paykit.sandbox.mocopay"
          local cjson = require "cjson.safe"
          local gw = paykit.mocopay { api_key = sim.credentials.api_key, api_secret = sim.credentials.api_secret,
                                      base_url = "${SANDBOX}/mocopay", retry = false }
          local req = { method = "GET", path = ngx.unescape_uri(ngx.var.arg_path), query = ngx.unescape_uri(ngx.var.arg_q) }
          local tasks = {}
          for i = 1, 52 do tasks[i] = function() return gw:notification(req) end end
          local results, errs = paykit.batch(tasks, { max_in_flight = 52 })
          local fresh, dup, bad = 0, 0, 0
          for i = 1, 52 do
            local r = results[i]
            if not r or r.status ~= "paid" then bad = bad + 1
            elseif r.duplicate then dup = dup + 1 else fresh = fresh + 1 end
          end
          ngx.print(cjson.encode { fresh = fresh, dup = dup, bad = bad, err = not results[1] and tostring(errs[1]) or nil })
        } }
      }
    ]], { PORT = port, SANDBOX = base })
    local t = require("paykit.http").new { retry = false, timeout = 60 }
    local res, err = t:request { url = "http://127.0.0.1:" .. port .. "/run?path=" .. core.pct_encode(session.uri:match("^[^?]*"))
      .. "&q=" .. core.pct_encode(session.query) }
    t:close()
    srv:stop()
    assert.is_nil(err)
    local out = require("cjson.safe").decode(res.body)
    io.stderr:write(string.format("\n[duplicate mocopay] nginx: %d of 52 duplicate=false, %d duplicate=true\n", out.fresh, out.dup))
    assert.same({ fresh = 1, dup = 51, bad = 0 }, out)
  end)
end)
