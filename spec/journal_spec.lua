-- The payment journal (paykit.journal, paykit.journal.wrap, paykit.journal.sweep) over real HTTP
-- against the sandbox, on the memory store, a real redis-server and a real Redis Cluster.
local paykit = require "paykit"
local core = require "paykit.core"
local cjson = require "cjson"
local journal = require "paykit.journal"
local store = require "paykit.store"
local sb = require "spec.support.sandbox"
local rs = require "spec.support.redis"

local REDIS_PORT, CLUSTER = 16440, { 16451, 16452, 16453 }
local NOTICE_KEYS = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" }

local base
local function ref(tag) return (tag or "j") .. "-" .. core.random_hex(6) end

local function counting_moka(url)
  local counter = { n = 0 }
  local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
    base_url = url or (base .. "/moka"), hooks = { before = function() counter.n = counter.n + 1 end } }
  return gw, counter
end

local function moka_payment(reference, extra)
  local p = { reference = reference, amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
    return_url = "https://shop.example/back",
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- The buyer approves the 3D page; the form Moka posts back (and notifies) comes back.
local function approve(r)
  local res = sb.post_json("/moka/_sandbox/3d/complete",
    { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" })
  assert.are.equal(200, res.status, res.body)
  return res.json.Fields
end

describe("the journal's state table", function()
  it("never leads back to created, and paid and failed lead nowhere", function()
    for from, nexts in pairs(journal.NEXT) do
      assert.is_nil(nexts.created, from .. " -> created")
    end
    assert.is_nil(next(journal.NEXT.paid)); assert.is_nil(next(journal.NEXT.failed))
    for _, s in ipairs(journal.STATES) do assert.is_table(journal.NEXT[s], s) end
  end)

  it("refuses a move the table does not allow, atomically", function()
    local j = journal.new {}
    assert(j:create { provider = "x", reference = "r1" })
    assert.is_true((j:move("x", "r1", "sent")))
    assert.is_true((j:move("x", "r1", "paid")))
    local ok, cur = j:move("x", "r1", "redirect")
    assert.is_false(ok)
    assert.are.equal("paid", cur.state)
    assert.is_false((j:move("x", "r1", "failed")))
    local rec = j:get("x", "r1")
    assert.is_true(rec.created_at <= rec.sent_at and rec.sent_at <= rec.paid_at, "time-stamped in order")
  end)
end)

local function journal_cases(name, make_store)
  describe("the journal on " .. name, function()
    local j
    before_each(function() j = assert(journal.new { store = make_store() }) end)

    it("writes the record before sending and keeps what complete() needs", function()
      local gw, count = counting_moka()
      local reference, seen_state = ref(), nil
      gw.http.hooks.before = function() count.n = count.n + 1; seen_state = j:get("moka", reference).state end
      local jg = j:wrap(gw)
      local r = assert(jg:purchase(moka_payment(reference)))
      assert.are.equal("redirect", r.status)
      assert.are.equal(1, count.n)
      assert.are.equal("sent", seen_state, "the record said sent while the request was leaving")
      local rec = jg:record_of(reference)
      assert.are.equal("redirect", rec.state)
      assert.are.equal("27.50", rec.amount); assert.are.equal("TL", rec.currency)
      assert.are.equal(r.keep.code_for_hash, rec.keep.code_for_hash)
      assert.is_true(rec.created_at <= rec.sent_at and rec.sent_at <= rec.redirect_at)
    end)

    it("answers a repeated purchase from the journal and never sends it again", function()
      local gw, count = counting_moka()
      local jg = j:wrap(gw)
      local p = moka_payment(ref())
      local r1 = assert(jg:purchase(p))
      local r2 = assert(jg:purchase(p))
      assert.are.equal(1, count.n)
      assert.are.equal(r1.redirect_url, r2.redirect_url)
      assert.is_true(r2.journal.replayed)
      local _, err = jg:purchase(moka_payment(p.reference, { amount = "30.00" }))
      assert.are.equal("reference_reused", err.code)
      assert.are.equal(1, count.n)
    end)

    it("sends two concurrent purchases of one reference once", function()
      local gw, count = counting_moka()
      local jg = j:wrap(gw)
      local p = moka_payment(ref())
      local results, errs = paykit.batch {
        function() return jg:purchase(p) end,
        function() return jg:purchase(p) end,
      }
      assert.are.equal(1, count.n)
      local answered, in_progress = 0, 0
      for i = 1, 2 do
        if results[i] then answered = answered + 1
        elseif errs[i].code == "in_progress" then in_progress = in_progress + 1; assert.is_true(errs[i].retryable) end
      end
      assert.are.equal(2, answered + in_progress)
      assert.is_true(answered >= 1)
    end)

    it("grants once when the return, the notification and a status check race", function()
      local gw = counting_moka()
      local grants = {}
      local jg = j:wrap(gw, { grant = function(_, token) grants[#grants + 1] = token; return true end })
      local reference = ref()
      local r = assert(jg:purchase(moka_payment(reference)))
      local fields = approve(r)
      local results = paykit.batch {
        function() return jg:status(reference) end,
        function() return jg:notification { method = "POST", body = core.form_encode(fields) } end,
        function() return jg:complete(fields) end,
        function() return jg:notification { method = "POST", body = core.form_encode(fields) } end,
      }
      local firsts = 0
      for i = 1, 4 do
        assert.are.equal("paid", results[i].status)
        if results[i].duplicate == false then firsts = firsts + 1 end
      end
      assert.are.equal(1, firsts, "one result with duplicate = false")
      assert.are.same({ "moka:" .. reference }, grants)
      local rec = jg:record_of(reference)
      assert.are.equal("paid", rec.state); assert.are.equal("done", rec.grant)
    end)

    it("leaves a reference refused before sending free for a corrected purchase", function()
      local gw, count = counting_moka()
      local jg = j:wrap(gw)
      local p = moka_payment(ref())
      p.card = { holder = "A", number = "4111111111111112", exp_month = "12", exp_year = "2031", cvc = "123" }
      local _, err = jg:purchase(p)
      assert.are.equal("validation", err.kind)
      assert.are.equal(0, count.n)
      assert.is_nil(jg:record_of(p.reference), "input refused before sending writes no record")
      local r = assert(jg:purchase(moka_payment(p.reference)))
      assert.are.equal("redirect", r.status)
      assert.are.equal(1, count.n)
    end)

    it("writes nothing when the provider raises before sending, unknown when after", function()
      local sent = 0
      local broken = { provider = "broken", http = { request = function() sent = sent + 1; return { status = 200 } end } }
      function broken.purchase(self, p)
        if p.send_first then self.http:request {} end
        error("provider bug")
      end
      local jg = j:wrap(broken)
      local before, after = ref("raise"), ref("raise")
      assert.has_error(function() jg:purchase { reference = before } end, "provider bug")
      assert.is_nil(j:get("broken", before), "nothing was about to be sent: no record")
      assert.has_error(function() jg:purchase { reference = after, send_first = true } end, "provider bug")
      assert.are.equal(1, sent)
      assert.are.equal("unknown", j:get("broken", after).state, "it may have been sent: for the sweeper")
    end)

    it("runs a failed grant again on the next report, with the same token", function()
      local gw = counting_moka()
      local tokens, fail = {}, true
      local jg = j:wrap(gw, { grant = function(_, token)
        tokens[#tokens + 1] = token
        if fail then fail = false; error("the game server is down") end
        return true
      end })
      local reference = ref()
      local fields = approve(assert(jg:purchase(moka_payment(reference))))
      local d = assert(jg:complete(fields))
      assert.are.equal("grant_failed", d.journal.grant)
      local n = assert(jg:notification { method = "POST", body = core.form_encode(fields) })
      assert.is_true(n.duplicate)
      assert.are.equal("granted", n.journal.grant)
      assert.are.same({ "moka:" .. reference, "moka:" .. reference }, tokens)
    end)

    it("completes MoCoPay from the record alone and learns the session for status", function()
      local gw = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay" }
      local granted = 0
      local jg = j:wrap(gw, { grant = function() granted = granted + 1; return true end })
      local reference = ref("mc")
      local r = assert(jg:purchase { pid = "12000", reference = reference, client_ip = "127.0.0.1",
        return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
      local back = sb.post_json("/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" }).json
      local d = assert(jg:complete(back.Location:match("%?(.*)$")))
      assert.are.equal("paid", d.status)
      assert.are.equal(1, granted)
      local rec = jg:record_of(reference)
      assert.is_string(rec.session_id)
      local s = assert(jg:status(reference))
      assert.are.equal("paid", s.status); assert.is_true(s.duplicate)
      local _, err = jg:status(ref("mc-none"))
      assert.are.equal("unsupported", err.code, "no session known: said so, nothing asked")
      assert.are.equal(1, granted)
    end)

    it("flags one of many Zippy notices of one payment as the first", function()
      local gw = paykit.zippy { consumer_key = "sandbox-key", consumer_secret = "sandbox-secret",
        notice_keys = NOTICE_KEYS, base_url = base .. "/zippy" }
      local granted = 0
      local jg = j:wrap(gw, { grant = function() granted = granted + 1; return true end })
      local seller, product = core.uuid4(), core.uuid4()
      assert(jg:create_seller { uuid = seller, status = "ACTIVE", name = "Journal shop", email = "shop@example.com" })
      assert(jg:create_product { uuid = product, name = "Shield", external_id = "shield-" .. core.random_hex(4), -- the gateway's own methods
        seller_id = seller })
      local reference = ref("zp")
      assert(jg:purchase { product_id = product, reference = reference, amount = "0.99", currency = "EUR",
        pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = "https://shop.example/back",
        notify_url = "http://127.0.0.1:9/n" })
      local _, body = require("paykit.providers.zippy").generate_test_notice {
        key = NOTICE_KEYS[1], key_id = 1, ext_transaction_id = reference }
      local firsts = 0
      for _ = 1, 5 do
        local n = assert(jg:notification { method = "POST", body = body })
        assert.are.equal("paid", n.status)
        if n.duplicate == false then firsts = firsts + 1 end
      end
      assert.are.equal(1, firsts)
      assert.are.equal(1, granted)
      assert.are.equal("paid", jg:record_of(reference).state)
    end)

    it("finds the record of a Zippy payment from its notices and return, whose id carries the reference's nonce", function()
      local gw = paykit.zippy { consumer_key = "sandbox-key", consumer_secret = "sandbox-secret",
        notice_keys = NOTICE_KEYS, base_url = base .. "/zippy" }
      local granted = 0
      local jg = j:wrap(gw, { grant = function() granted = granted + 1; return true end })
      local seller, product = core.uuid4(), core.uuid4()
      assert(jg:create_seller { uuid = seller, status = "ACTIVE", name = "Journal shop", email = "shop@example.com" })
      assert(jg:create_product { uuid = product, name = "Shield", external_id = "shield-" .. core.random_hex(4), seller_id = seller })
      local function buy(reference)
        local r = assert(jg:purchase { product_id = product, reference = reference, amount = "0.99", currency = "EUR",
          pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = "https://shop.example/back",
          notify_url = "http://127.0.0.1:9/n" })
        assert.are_not.equal(reference, r.reference, "Zippy's id is the reference and a nonce")
        return sb.post_json("/zippy/_sandbox/pay", { token = r.keep.token, outcome = "success" }).json
      end
      local reference = ref("zpn")
      local paid = buy(reference)
      local body = "signed_notice=" .. core.pct_encode(paid.signed_notice)
      local firsts = 0
      for _ = 1, 3 do
        local n = assert(jg:notification { method = "POST", body = body })
        assert.are.equal("paid", n.journal.state, "the notice found the record")
        if n.duplicate == false then firsts = firsts + 1 end
      end
      assert.are.equal(1, firsts)
      assert.are.equal(1, granted)
      assert.are.equal("paid", jg:record_of(reference).state)
      local back = assert(jg:complete(paid.Location:match("%?(.*)$"), jg:record_of(reference).keep))
      assert.is_true(back.duplicate, "the return, with the purchase's keep, finds the same record")
      -- a notice of another payment with the same reference before the nonce is not this one's
      local other = ref("zpo")
      buy(other)
      local _, fbody = require("paykit.providers.zippy").generate_test_notice {
        key = NOTICE_KEYS[1], key_id = 1, ext_transaction_id = other .. "~" .. ("0"):rep(12) }
      local f = assert(jg:notification { method = "POST", body = fbody })
      assert.is_nil(f.journal.state, "no record moved")
      assert.are_not.equal("paid", jg:record_of(other).state)
      assert.are.equal(1, granted)
    end)

    it("sweeps: a record left in created is refused, a paid one is granted, Zippy expires after its window", function()
      local gw = counting_moka()
      local granted = {}
      local jg = j:wrap(gw, { grant = function(_, t) granted[#granted + 1] = t; return true end })
      -- a process that died after writing the record, before sending
      local dead = ref("dead")
      assert(j:create { provider = "moka", reference = dead, amount = "1.00", currency = "TL" })
      -- a process that died after sending: Moka has the payment, the record says sent
      local lost = ref("lost")
      assert(j:create { provider = "moka", reference = lost, amount = "27.50", currency = "TL" })
      assert(j:move("moka", lost, "sent"))
      assert.are.equal("paid", assert(gw:purchase(moka_payment(lost, { three_d = false }))).status)
      core.sleep(1.1)
      local report = assert(jg:sweep { older_than = 1, limit = 50 })
      assert.is_true(report.refused >= 1)
      assert.are.equal("refused", jg:record_of(dead).state)
      assert.are.equal("paid", jg:record_of(lost).state)
      assert.are.same({ "moka:" .. lost }, granted)
      local found = false
      for _, x in ipairs(report.resolved) do if x.reference == lost then found = x.from == "sent" and x.to == "paid" end end
      assert.is_true(found, "the report names it")
      assert.are.equal(0, #report.errors)
      -- Zippy: nothing to ask; expired once expire_after has passed
      local z = j:wrap(paykit.zippy { consumer_key = "k", consumer_secret = "s", notice_keys = NOTICE_KEYS,
        base_url = base .. "/zippy" }, { expire_after = 1 })
      local zr = ref("zexp")
      assert(j:create { provider = "zippy", reference = zr })
      assert(j:move("zippy", zr, "sent")); assert(j:move("zippy", zr, "redirect"))
      core.sleep(1.1)
      local all = j:sweep { older_than = 1 } -- every gateway this journal wrapped
      assert.are.equal("expired", z:record_of(zr).state)
      assert.is_true(all.zippy.expired >= 1)
      assert.is_table(all.moka)
    end)
  end)
end

describe("the journal", function()
  local srv, cl
  lazy_setup(function()
    base = sb.start()
    srv = rs.start { port = REDIS_PORT, password = "journal-pw" }
    cl = rs.cluster { ports = CLUSTER }
  end)
  lazy_teardown(function()
    sb.stop(); srv:stop(); cl:stop()
  end)

  journal_cases("the memory store", function() return store.memory() end)
  journal_cases("Redis", function() return assert(store.redis { port = REDIS_PORT, password = "journal-pw" }) end)
  journal_cases("a 3-master Redis Cluster", function() return assert(store.redis { cluster = true, nodes = cl:seeds() }) end)

  it("keeps one payment's keys in one Cluster slot", function()
    local j = journal.new {}
    assert.are.equal(core.redis_slot(j:key("moka", "o-1", "rec")), core.redis_slot(j:key("moka", "o-1", "lease")))
  end)

  it("refuses to charge when Redis is down: nothing reaches the network", function()
    local sink = "journal-down-" .. core.random_hex(4)
    local gw = counting_moka(base .. "/_sink/" .. sink)
    local j = journal.new { store = assert(store.redis { port = REDIS_PORT + 90, connect_timeout = 300 }) }
    local _, err = j:wrap(gw):purchase(moka_payment(ref()))
    assert.are.equal("journal_unavailable", err.code)
    assert.truthy(err.message:find("nothing was sent", 1, true))
    assert.are.equal(0, #sb.sink_log(sink))
  end)

  it("sends payments it cannot resolve yet to the back of the sweeper's queue", function()
    local j = journal.new { store = store.memory() }
    local gw = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay" }
    local jg = j:wrap(gw)
    -- two MoCoPay payments whose session is not known (no status call possible) come first
    for i = 1, 2 do
      assert(j:create { provider = "mocopay", reference = "nosession-" .. i .. core.random_hex(3) })
      core.sleep(0.01)
    end
    -- then one paid at MoCoPay whose process died before it learned the outcome
    local reference = ref("mcs")
    local r = assert(jg:purchase { pid = "12000", reference = reference, client_ip = "127.0.0.1",
      return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
    local back = sb.post_json("/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" }).json
    local sid = back.Location:match("sessionId=(%w+)")
    assert(j:move("mocopay", reference, "redirect", { session_id = sid }))
    for _, x in ipairs(j.store:index_range(j:index("mocopay"), math.huge, 10)) do
      local rec = j:get("mocopay", x)
      if rec.state == "created" then assert(j:move("mocopay", x, "sent")) end
    end
    core.sleep(1.1)
    local first = assert(jg:sweep { older_than = 1, limit = 2 })
    assert.are.equal(2, first.unresolved)
    assert.are.equal("redirect", jg:record_of(reference).state)
    local second = assert(jg:sweep { older_than = 1, limit = 2 })
    assert.are.equal("paid", jg:record_of(reference).state, "reached once the others went to the back")
    assert.are.equal(1, #second.resolved)
  end)

  it("costs the store round trips the README gives", function()
    local mem, calls = store.memory(), 0
    local counting = setmetatable({}, { __index = function(_, k)
      local f = mem[k]
      return function(_, ...) calls = calls + 1; return f(mem, ...) end
    end })
    local jg = journal.new { store = counting }:wrap((counting_moka()), { grant = function() return true end })
    local reference = ref("cost")
    local r = assert(jg:purchase(moka_payment(reference)))
    assert.are.equal(4, calls, "purchase")
    local fields = approve(r)
    calls = 0
    assert.are.equal("granted", assert(jg:complete(fields)).journal.grant)
    assert.are.equal(7, calls, "complete, keep read from the record, paid and granted")
    calls = 0
    assert.is_true(assert(jg:notification { method = "POST", body = core.form_encode(fields) }).duplicate)
    assert.are.equal(2, calls, "a repeated Moka notification")
  end)

  it("sends nothing when the store fails between writing the record and marking it sent", function()
    local mem = store.memory()
    local flaky = setmetatable({ transition = function() return nil, store.error("flaky", "gone", "closed") end },
      { __index = function(_, k) local f = mem[k]; return function(_, ...) return f(mem, ...) end end })
    local j = journal.new { store = flaky }
    local gw, count = counting_moka()
    local reference = ref("flaky")
    local _, err = j:wrap(gw):purchase(moka_payment(reference))
    assert.are.equal("journal_unavailable", err.code)
    assert.are.equal(0, count.n)
    assert.are.equal("created", j:get("moka", reference).state, "left for the sweeper to refuse")
    core.sleep(1.1)
    local report = assert(j:wrap(gw):sweep { older_than = 1 })
    assert.are.equal(0, report.refused, "the flaky store cannot move it either")
    local healthy = journal.new { store = mem }
    report = assert(healthy:wrap(gw):sweep { older_than = 1 })
    assert.are.equal(1, report.refused)
    assert.are.equal("refused", healthy:get("moka", reference).state)
    assert.are.equal(0, count.n)
  end)

  it("resolves several stuck payments in one sweep, their status calls sent together", function()
    local j = journal.new { store = store.memory() }
    local gw, count = counting_moka()
    local jg = j:wrap(gw)
    local refs = {}
    for i = 1, 6 do
      refs[i] = ref("many")
      assert(j:create { provider = "moka", reference = refs[i], amount = "27.50", currency = "TL" })
      assert(j:move("moka", refs[i], "sent"))
      if i <= 4 then assert(gw:purchase(moka_payment(refs[i], { three_d = false }))) end
    end
    core.sleep(1.1)
    count.n = 0
    local report = assert(jg:sweep { older_than = 1 })
    assert.are.equal(6, count.n, "one status call each")
    assert.are.equal(6, report.checked)
    local paid = 0
    for _, x in ipairs(report.resolved) do if x.to == "paid" then paid = paid + 1 end end
    assert.are.equal(4, paid)
    for i = 1, 4 do assert.are.equal("paid", j:get("moka", refs[i]).state) end
    for i = 5, 6 do assert.are.equal("sent", j:get("moka", refs[i]).state, "Moka never saw it: still open") end
  end)

  it("gives up on a slow Redis after the store timeout, and sends nothing", function()
    local j = journal.new { store = assert(store.redis { port = REDIS_PORT, password = "journal-pw", timeout = 300 }) }
    local gw, count = counting_moka()
    assert(j:get("moka", "warm-up") == nil) -- a pooled connection, authenticated
    srv:cli("CLIENT", "PAUSE", "2000", "ALL")
    local _, err = j:wrap(gw):purchase(moka_payment(ref("slow")))
    srv:cli("CLIENT", "UNPAUSE")
    assert.are.equal("journal_unavailable", err.code)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("store_timeout", err.cause.code)
    assert.are.equal(0, count.n)
  end)

  it("loses no journal entry when Redis is killed and restarted (AOF) in the middle of a run", function()
    local j = journal.new { store = assert(store.redis { port = REDIS_PORT, password = "journal-pw" }) }
    local jg = j:wrap((counting_moka()))
    local refs = {}
    for i = 1, 10 do
      refs[i] = ref("aof")
      assert(jg:purchase(moka_payment(refs[i])))
      if i == 5 then srv:kill(); srv:launch() end
    end
    srv:kill(); srv:launch()
    for i = 1, 10 do
      local rec = assert(jg:record_of(refs[i]), refs[i])
      assert.are.equal("redirect", rec.state)
    end
    assert.are.equal("redirect", cjson.decode(srv:cli("GET", j:key("moka", refs[1], "rec"))).state)
  end)
end)
