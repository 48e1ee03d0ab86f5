-- The journal across real processes: Lua 5.4 processes (spec/support/journal_worker.lua) and
-- a 2-worker nginx (spec/support/journal_app.lua, over cosockets) sharing one real
-- redis-server, against the sandbox.
local paykit = require "paykit"
local core = require "paykit.core"
local cjson = require "cjson"
local journal = require "paykit.journal"
local store = require "paykit.store"
local sb = require "spec.support.sandbox"
local rs = require "spec.support.redis"
local nginx = require "spec.support.nginx"

local PORT, PW, NGINX_PORT = 16460, "procs-pw", 18851
local PAYMENTS = 100

local function tmp(name)
  os.execute("mkdir -p build/test")
  return os.getenv("PWD") .. "/build/test/" .. name .. "-" .. core.random_hex(4)
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a"); f:close()
  return s
end

-- Starts a worker in the background; returns its pid and the file its output goes to.
local function spawn(...)
  local out = tmp("worker-out")
  local args = {}
  for i, a in ipairs { ... } do args[i] = "'" .. tostring(a) .. "'" end
  local p = io.popen("lua5.4 spec/support/journal_worker.lua " .. table.concat(args, " ") .. " > " .. out .. " 2>&1 & echo $!")
  local pid = tonumber(p:read("*a")); p:close()
  return pid, out
end

local function running(pid)
  local ok, _, code = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if type(ok) == "number" then return ok == 0 end
  return ok == true and (code == nil or code == 0)
end

local function wait_exit(pid, seconds)
  for _ = 1, seconds * 20 do
    if not running(pid) then return true end
    core.sleep(0.05)
  end
  return false
end

local function moka()
  return paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = sb.url() .. "/moka" }
end

describe("the journal across processes", function()
  local srv, ngx_srv
  lazy_setup(function()
    sb.start()
    srv = rs.start { port = PORT, password = PW }
    ngx_srv = nginx.start("journal-procs", [=[
  lua_shared_dict paykit_journal 1m;
  lua_shared_dict grants 1m;
  server {
    listen 127.0.0.1:${PORT};
    location ~ ^/(notify|grants)$ { content_by_lua_block { require("spec.support.journal_app")[ngx.var[1]]() } }
  }
]=], { PORT = NGINX_PORT, WORKERS = 2 })
  end)
  lazy_teardown(function() ngx_srv:stop(); srv:stop(); sb.stop() end)

  it("grants each of " .. PAYMENTS .. " payments once while two processes and nginx race to complete them all", function()
    local j = journal.new { store = assert(store.redis { port = PORT, password = PW }) }
    local jg = j:wrap(moka())
    local list = {}
    for i = 1, PAYMENTS do
      local ref = "race-" .. i .. "-" .. core.random_hex(4)
      local r = assert(jg:purchase { reference = ref, amount = "5.00", currency = "TL", client_ip = "127.0.0.1",
        return_url = "https://shop.example/back",
        card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
      local back = sb.post_json("/moka/_sandbox/3d/complete",
        { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" }).json
      list[i] = { reference = ref, fields = back.Fields }
    end
    local pay_file, grants, go = tmp("payments"), tmp("grants"), tmp("go")
    local f = assert(io.open(pay_file, "w")); f:write(cjson.encode(list)); f:close()
    local a, out_a = spawn("complete", sb.url(), PORT, PW, pay_file, grants, go)
    local b, out_b = spawn("complete", sb.url(), PORT, PW, pay_file, grants, go, "reverse")
    -- nginx takes the payments in a shuffled order, one after another: the three meet everywhere
    local order = {}
    for i = 1, #list do order[i] = i end
    for i = #order, 2, -1 do local k = math.random(i); order[i], order[k] = order[k], order[i] end
    local reqs = {}
    local q = "?store=redis&port=" .. PORT .. "&pw=" .. PW .. "&sandbox=" .. core.pct_encode(sb.url())
    for i, k in ipairs(order) do
      local p = list[k]
      reqs[i] = { method = "POST", url = "http://127.0.0.1:" .. NGINX_PORT .. "/notify" .. q,
                  body = core.form_encode(p.fields), headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
    end
    core.sleep(0.3) -- both loaded and waiting
    assert(io.open(go, "w")):close()
    local answers = sb.http():batch(reqs, { max_in_flight = 1 }) -- while the processes race
    assert.is_true(wait_exit(a, 120), "worker a finished"); assert.is_true(wait_exit(b, 120), "worker b finished")
    local nn = 0
    for _, res in ipairs(answers) do
      assert.are.equal(200, res.status, tostring(res.body or res.error))
      local r = cjson.decode(res.body)
      assert.are.equal("paid", r.status, res.body)
      if r.duplicate == false then nn = nn + 1 end
    end
    local fa, fb = read(out_a), read(out_b)
    local na, nb = tonumber(fa:match("firsts=(%d+)")), tonumber(fb:match("firsts=(%d+)"))
    assert.is_number(na, fa); assert.is_number(nb, fb)
    assert.are.equal(PAYMENTS, na + nb + nn, "one first result per payment over both processes and nginx")
    local counts = {}
    for line in (read(grants) or ""):gmatch("[^\n]+") do counts[line] = (counts[line] or 0) + 1 end
    for _, p in ipairs(list) do
      local token = "moka:" .. p.reference
      local in_nginx = cjson.decode(sb.request("GET", "http://127.0.0.1:" .. NGINX_PORT .. "/grants?token=" .. token).body).count
      assert.are.equal(1, (counts[token] or 0) + in_nginx, p.reference)
      assert.are.equal("done", jg:record_of(p.reference).grant)
    end
    os.remove(pay_file); os.remove(grants); os.remove(go); os.remove(out_a); os.remove(out_b)
  end)

  it("sends one request when three processes purchase the same reference at once", function()
    local reference, go = "same-" .. core.random_hex(6), tmp("go")
    local procs = {}
    for i = 1, 3 do procs[i] = { spawn("purchase", sb.url(), PORT, PW, reference, go) } end
    core.sleep(0.5) -- all three loaded and waiting
    assert(io.open(go, "w")):close()
    local sent, outcomes = 0, {}
    for _, p in ipairs(procs) do
      assert.is_true(wait_exit(p[1], 60))
      local out = read(p[2])
      sent = sent + assert(tonumber(out:match("sent=(%d+)")), out)
      local o = out:match("outcome=(%S+)")
      outcomes[o] = (outcomes[o] or 0) + 1
      os.remove(p[2])
    end
    os.remove(go)
    assert.are.equal(1, sent, "one request over the three processes")
    assert.are.equal(1, outcomes.redirect, "one sent it")
    assert.are.equal(2, (outcomes.in_progress or 0) + (outcomes.replayed or 0), "the others waited or replayed")
  end)

  it("resolves a payment whose process was killed (kill -9) before it read Moka's answer", function()
    local reference, marker = "killed-" .. core.random_hex(6), tmp("marker")
    local pid, out = spawn("die", sb.url(), PORT, PW, reference, marker)
    for _ = 1, 200 do if read(marker) then break end; core.sleep(0.05) end
    assert.are.equal("answered\n", read(marker), read(out))
    os.execute("kill -9 " .. pid)
    assert.is_true(wait_exit(pid, 10))
    local granted = {}
    local j = journal.new { store = assert(store.redis { port = PORT, password = PW }) }
    local jg = j:wrap(moka(), { grant = function(rec, token)
      granted[#granted + 1] = token
      return rec.amount == "12.34"
    end })
    assert.are.equal("sent", jg:record_of(reference).state, "the killed process left the record in sent")
    core.sleep(1.1)
    local report = assert(jg:sweep { older_than = 1 })
    local resolved
    for _, x in ipairs(report.resolved) do if x.reference == reference then resolved = x end end
    assert.are.same({ reference = reference, from = "sent", to = "paid" }, resolved)
    assert.are.same({ "moka:" .. reference }, granted)
    -- a second sweep finds nothing left to do, and grants nothing again
    report = assert(jg:sweep { older_than = 0 })
    for _, x in ipairs(report.resolved) do assert.are_not.equal(reference, x.reference) end
    assert.are.equal(1, #granted)
    os.remove(marker); os.remove(out)
  end)

  it("grants again, with the same token, after a process is killed (kill -9) inside its grant", function()
    local j = journal.new { store = assert(store.redis { port = PORT, password = PW }), lease = 1 }
    local tokens = {}
    local jg = j:wrap(moka(), { grant = function(_, token) tokens[#tokens + 1] = token; return true end })
    local reference = "grantkill-" .. core.random_hex(6)
    local r = assert(jg:purchase { reference = reference, amount = "3.00", currency = "TL", client_ip = "127.0.0.1",
      return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
    local back = sb.post_json("/moka/_sandbox/3d/complete",
      { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" }).json
    local pay_file, marker = tmp("payment"), tmp("grant-marker")
    local f = assert(io.open(pay_file, "w")); f:write(cjson.encode { fields = back.Fields }); f:close()
    local pid, out = spawn("die_in_grant", sb.url(), PORT, PW, pay_file, marker)
    for _ = 1, 200 do if read(marker) then break end; core.sleep(0.05) end
    local dead_token = (read(marker) or ""):match("^(%S+)")
    assert.are.equal("moka:" .. reference, dead_token, read(out))
    os.execute("kill -9 " .. pid)
    assert.is_true(wait_exit(pid, 10))
    -- the payment is paid, its grant claimed and never confirmed: a repeat inside the lease waits
    local n = assert(jg:notification { method = "POST", body = core.form_encode(back.Fields) })
    assert.is_true(n.duplicate)
    assert.are.equal("in_progress", n.journal.grant)
    assert.are.equal(0, #tokens)
    core.sleep(3.3) -- the dead process's lease expires
    local report = assert(jg:sweep { older_than = 0 })
    assert.are.equal(1, report.granted)
    assert.are.same({ dead_token }, tokens, "the grant ran again with the dead process's token")
    assert.are.equal("done", jg:record_of(reference).grant)
    os.remove(pay_file); os.remove(marker); os.remove(out)
  end)

  it("runs the grant again, with the same token, when its process dies between claim and confirm", function()
    local s = assert(store.redis { port = PORT, password = PW })
    local reference = "lease-" .. core.random_hex(6)
    local dying = journal.new { store = s, lease = 1 }
    assert(dying:create { provider = "moka", reference = reference, amount = "1.00", currency = "TL" })
    assert(dying:move("moka", reference, "sent")); assert(dying:move("moka", reference, "paid"))
    local claim = assert(dying:claim("moka", reference))
    -- ... and the process holding the claim dies here: it never confirms
    local other = journal.new { store = s, lease = 1 }
    local busy, why = other:claim("moka", reference)
    assert.is_false(busy); assert.are.equal("in_progress", why)
    core.sleep(1.3) -- the lease expires
    local tokens = {}
    assert.are.equal("granted", other:fulfil("moka", reference, function(_, t) tokens[#tokens + 1] = t; return true end))
    assert.are.same({ claim.token }, tokens)
    assert.are.equal("already", other:fulfil("moka", reference, function() error("must not run") end))
    assert.is_false((dying:confirm(claim)), "the dead claim's late confirm changes nothing")
  end)
end)
