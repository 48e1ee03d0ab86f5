-- Forged MoCoPay returns, notifications and status checks against the sandbox over real HTTP:
-- a fraudster holding one paid session (or a failed one, a subscription, another product's)
-- tries to get an order that was never paid reported "paid". The return and unsigned
-- notifications are plain query strings anyone can write; signed notifications can be
-- replayed and tampered with; the sandbox's verify_answer call plays a provider that answers
-- for another session or leaves fields out. Every case counts; none may give "paid".
local sb = require "spec.support.sandbox"
local core = require "paykit.core"
local paykit = require "paykit"
local mocopay = require "paykit.providers.mocopay"
local sim = require "paykit.sandbox.mocopay"
local NULL = require("cjson.safe").null

local base
local tried, false_paid, failures = 0, 0, {}

local function uniq() return core.random_hex(6) end

local function gateway(opts)
  local o = { api_key = sim.credentials.api_key, api_secret = sim.credentials.api_secret, base_url = base .. "/mocopay",
              retry = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return paykit.mocopay(o)
end

-- The buyer acts on the checkout page; returns the decoded return parameters.
local function act(result, action)
  local trn = result.redirect_url:match("trn=(%x+)")
  local res = sb.post_json("/mocopay/_sandbox/act", { trn = trn, action = action })
  assert.equal(200, res.status, res.body)
  return core.query_decode(res.json.Location:match("%?(.*)$")), res.json.sessionId
end

local function forge_answer(session_id, as, set)
  local res = sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = session_id, as = as, set = set })
  assert.equal(200, res.status, res.body)
end

-- One forged attempt against an order that was not paid. `target` is {reference=}; for a
-- return or a status check with the order's keep any "paid" is false, for a notification a
-- "paid" naming the target's reference is.
local function judge(name, target, any, ok, err)
  tried = tried + 1
  local bad = type(ok) == "table" and ok.status == "paid" and (any or ok.reference == target.reference)
  if bad then
    false_paid = false_paid + 1
    failures[#failures + 1] = name
  end
  return not bad, ok, err
end

local function query_of(map)
  local list = {}
  for k, v in pairs(map) do list[#list + 1] = { k, v } end
  return core.canonical_query(list)
end

local function copy(t, over)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  for k, v in pairs(over or {}) do r[k] = v end
  return r
end

describe("mocopay forgeries", function()
  local gw, n
  -- A: paid one-time; S: paid subscription; X: paid, another product; F: billing failed;
  -- B: cancelled (its return's requestId and referenceId are known); C: open, never finished.
  local A, S, X, F, B, C = {}, {}, {}, {}, {}, {}

  local function order(t, pid, action, user)
    t.purchase = assert(gw:purchase { pid = pid, reference = "ord-" .. uniq(), user_id = user })
    t.keep, t.reference, t.request_id = t.purchase.keep, t.purchase.reference, t.purchase.provider_reference
    if action then
      t.ret, t.session_id = act(t.purchase, action)
    end
    return t
  end

  lazy_setup(function()
    base = sb.start()
    n = uniq()
    gw = gateway { callback_url = base .. "/_sink/fret-" .. n, notify_url = base .. "/_sink/fn-" .. n }
    order(A, "12000", "send-sms", "user-a-" .. n)
    A.notices = sb.sink_log("fn-" .. n, 2)
    local done = assert(gw:complete(A.ret, A.keep))
    assert.equal("paid", done.status)
    A.txn = done.payment.transactions[1]
    order(S, "SUB-W", "send-sms")
    order(X, "CHEAP-1", "send-sms")
    order(F, "FAIL-1", "send-sms")
    order(B, "12000", "cancel", "user-b-" .. n)
    order(C, "12000")
    C.session_id = "c" .. core.random_hex(15) -- unknown to anyone: the fraudster guesses
    sb.sink_log("fn-" .. n, 8)
  end)
  lazy_teardown(function() sb.stop() end)

  local function donors() return { A, S, X, F } end
  local function targets() return { B, C } end

  describe("of the buyer's return", function()
    local PAID_WORDS = { "PaymentComplete", "Authorized", "paid", "PAYMENTCOMPLETE", "success" }

    it("never pays an order with another order's paid session and the order's own ids (issue 3a)", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          for _, word in ipairs(PAID_WORDS) do
            local q = { sid = D.session_id, sessionId = D.session_id, requestId = T.request_id,
                        referenceId = T.reference, status = word }
            local name = "return: session " .. D.keep.pid .. " for " .. T.reference .. " " .. word
            assert.is_true(judge(name, T, true, gw:complete(q, T.keep)), name)
            assert.is_true(judge(name .. " (query string)", T, true, gw:complete(query_of(q), T.keep)), name)
            assert.is_true(judge(name .. " (URL)", T, true,
              gw:complete("https://shop.example/back?" .. query_of(q), T.keep)), name)
          end
        end
      end
    end)

    it("never pays with a donor's return replayed as it is, or with mixed ids", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local name = "return: verbatim " .. D.keep.pid .. " for " .. T.reference
          assert.is_true(judge(name, T, true, gw:complete(D.ret, T.keep)), name)
          for _, mix in ipairs { { requestId = T.request_id }, { referenceId = T.reference } } do
            local q = copy(D.ret, mix)
            assert.is_true(judge(name .. " mixed", T, true, gw:complete(q, T.keep)), name)
          end
        end
      end
    end)

    it("never pays with sid and sessionId of different sessions, repeated or renamed parameters", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local ids = "requestId=" .. core.pct_encode(T.request_id) .. "&referenceId=" .. core.pct_encode(T.reference)
            .. "&status=PaymentComplete"
          local tries = {
            "sid=" .. D.session_id .. "&sessionId=" .. T.session_id .. "&" .. ids,
            "sid=" .. T.session_id .. "&sessionId=" .. D.session_id .. "&" .. ids,
            "sid=" .. D.session_id .. "&sessionId=" .. D.session_id .. "&sessionId=" .. T.session_id .. "&" .. ids,
            "sid=" .. T.session_id .. "&sid=" .. D.session_id .. "&sessionId=" .. T.session_id .. "&sessionId=" .. D.session_id .. "&" .. ids,
            "SID=" .. D.session_id .. "&SESSIONID=" .. D.session_id .. "&" .. ids,
            "sid=" .. T.session_id .. "&sessionId=" .. T.session_id .. "&SessionId=" .. D.session_id .. "&" .. ids,
            "sid=" .. D.session_id .. "&sessionId=" .. D.session_id .. "&requestId=" .. D.keep.request_id .. "&" .. ids,
            "sid=%20" .. D.session_id .. "&sessionId=%20" .. D.session_id .. "&" .. ids,
            "sid=" .. D.session_id .. "%00&sessionId=" .. D.session_id .. "%00&" .. ids,
            "sid=" .. D.session_id .. "&sessionId=" .. D.session_id .. "&" .. ids .. "&status=PaymentComplete",
          }
          for i, q in ipairs(tries) do
            local name = "return: shape " .. i .. " " .. D.keep.pid .. " for " .. T.reference
            assert.is_true(judge(name, T, true, gw:complete(q, T.keep)), name)
          end
        end
      end
    end)

    it("never pays a cancelled, open or failed order whose own return says PaymentComplete", function()
      local q = copy(B.ret, { status = "PaymentComplete" })
      assert.is_true(judge("return: cancelled flipped", B, true, gw:complete(q, B.keep)))
      local guess = { sid = C.session_id, sessionId = C.session_id, requestId = C.request_id,
                      referenceId = C.reference, status = "PaymentComplete" }
      assert.is_true(judge("return: open, guessed session", C, true, gw:complete(guess, C.keep)))
      local fq = copy(F.ret, { status = "PaymentComplete" })
      assert.is_true(judge("return: failed flipped", F, true, gw:complete(fq, F.keep)))
    end)

    it("never pays when verifyPayment answers for another session than the one asked about", function()
      for _, D in ipairs(donors()) do
        -- B's own session, answered with the donor's paid state
        forge_answer(B.session_id, D.session_id)
        local q = copy(B.ret, { status = "PaymentComplete" })
        local ok, res, err = judge("return: answer for " .. D.keep.pid .. " to B's question", B, true, gw:complete(q, B.keep))
        assert.is_true(ok)
        assert.is_nil(res)
        assert.equal("session_mismatch", err.code)
        forge_answer(B.session_id)
        -- the donor's session, answered as if it were B's (sessionId replaced)
        forge_answer(D.session_id, nil, { sessionId = B.session_id, requestId = B.request_id, referenceId = B.reference })
        q = copy(D.ret, { requestId = B.request_id, referenceId = B.reference, status = "PaymentComplete" })
        ok, res, err = judge("return: answer renamed to B", B, true, gw:complete(q, B.keep))
        assert.is_true(ok)
        assert.is_nil(res)
        assert.equal("session_mismatch", err.code)
        forge_answer(D.session_id)
      end
    end)

    it("never pays when the answer does not say which purchase the session belongs to", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          forge_answer(D.session_id, nil, { requestId = NULL, referenceId = NULL })
          local q = { sid = D.session_id, sessionId = D.session_id, requestId = T.request_id,
                      referenceId = T.reference, status = "PaymentComplete" }
          local name = "return: unbound answer " .. D.keep.pid .. " for " .. T.reference
          local ok, res = judge(name, T, true, gw:complete(q, T.keep))
          assert.is_true(ok, name)
          if res then assert.equal("pending", res.status) end
          forge_answer(D.session_id, nil, { sessionId = NULL })
          assert.is_true(judge(name .. " (no sessionId)", T, true, gw:complete(q, T.keep)), name)
          forge_answer(D.session_id)
        end
      end
    end)

    it("never pays from the return alone when confirm_return is off", function()
      local lazy = gateway { confirm_return = false }
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local q = { sid = D.session_id, sessionId = D.session_id, requestId = T.request_id,
                      referenceId = T.reference, status = "PaymentComplete" }
          assert.is_true(judge("return: unconfirmed " .. D.keep.pid, T, true, lazy:complete(q, T.keep)))
        end
      end
    end)
  end)

  describe("of notifications", function()
    local function as_request(e, query)
      return { method = e and e.method or "GET", path = e and e.uri:match("^[^?]*") or "/_sink/fn-" .. n,
               query = query or e.query }
    end

    it("never names an order from an unsigned notification's referenceId (issue 3b)", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local fresh = gateway() -- nothing remembered: each try is a first delivery
          local q = { sessionId = D.session_id, referenceId = T.reference, status = "Authorized", sessionType = "onetime",
                      series = "1", chargedAmount = "199", currencyCode = "EUR", pid = D.keep.pid }
          local name = "notice: unsigned " .. D.keep.pid .. " for " .. T.reference
          assert.is_true(judge(name, T, false, fresh:notification(as_request(nil, query_of(q)))), name)
          q.series = "7" -- another key for the duplicate memory
          assert.is_true(judge(name .. " (new key)", T, false, gw:notification(as_request(nil, query_of(q)))), name)
          local tq = { transactionId = D.txn or A.txn, referenceId = T.reference, status = "Charged", amount = "199" }
          assert.is_true(judge(name .. " (transaction)", T, false, fresh:notification(as_request(nil, query_of(tq)))), name)
          tq.sessionId = D.session_id
          assert.is_true(judge(name .. " (transaction+session)", T, false, fresh:notification(as_request(nil, query_of(tq)))), name)
          local cq = "sessionId=" .. D.session_id .. "&ReferenceId=" .. core.pct_encode(T.reference)
            .. "&referenceid=" .. core.pct_encode(T.reference) .. "&status=Authorized"
          assert.is_true(judge(name .. " (renamed)", T, false, fresh:notification(as_request(nil, cq))), name)
        end
      end
    end)

    it("never pays a target whose own session is unpaid, whatever an unsigned notice says", function()
      for _, word in ipairs { "Authorized", "Charged", "PaymentComplete" } do
        local q = { sessionId = B.session_id, referenceId = B.reference, status = word, series = "1" }
        assert.is_true(judge("notice: B says " .. word, B, false, gateway():notification(as_request(nil, query_of(q)))))
        q.sessionId = C.session_id
        q.referenceId = C.reference
        assert.is_true(judge("notice: C guessed " .. word, C, false, gateway():notification(as_request(nil, query_of(q)))))
      end
    end)

    it("refuses a donor's signed notification with the target's reference put in", function()
      for _, T in ipairs(targets()) do
        for _, e in ipairs(A.notices) do
          local ref = core.pct_encode(A.reference)
          local tref = core.pct_encode(T.reference)
          local tries = {
            (e.query:gsub("referenceId=" .. ref:gsub("%p", "%%%0"), "referenceId=" .. tref)),
            e.query .. "&referenceId=" .. tref,
            "referenceId=" .. tref .. "&" .. e.query,
            e.query .. "&ReferenceId=" .. tref,
            (e.query:gsub("sessionId=%x+", "sessionId=" .. B.session_id)),
          }
          for i, q in ipairs(tries) do
            local ok, res, err = judge("notice: signed tamper " .. i, T, false, gateway():notification(as_request(e, q)))
            assert.is_true(ok)
            assert.is_nil(res, "tamper " .. i)
            assert.equal("signature", err.kind, "tamper " .. i .. ": " .. tostring(err))
          end
          -- the reference in a POSTed body over a signed query
          local req = as_request(e)
          req.method, req.body = "POST", "referenceId=" .. tref
          local ok, res = judge("notice: signed + body", T, false, gateway():notification(req))
          assert.is_true(ok)
          assert.is_nil(res)
        end
      end
    end)

    it("refuses notifications signed with another key, another secret or over another path", function()
      for _, T in ipairs(targets()) do
        local p = { sessionId = A.session_id, referenceId = T.reference, status = "Authorized" }
        local path = "/_sink/fn-" .. n
        local tries = {
          mocopay.signed_query("intruder", "intruder-secret", path, p),
          mocopay.signed_query(sim.credentials.api_key, "guessed-secret", path, p),
          mocopay.signed_query(sim.credentials.api_key, sim.credentials.api_secret, "/elsewhere", p),
          mocopay.signed_query(sim.credentials_sha1.api_key, sim.credentials_sha1.api_secret, path, p, "sha1"),
          query_of(p) .. "&signature=" .. core.pct_encode(sim.credentials.api_key .. ":"),
          query_of(p) .. "&signature=" .. core.pct_encode(sim.credentials.api_key),
        }
        for i, q in ipairs(tries) do
          local ok, res = judge("notice: bad key " .. i, T, false, gateway():notification(as_request(nil, q)))
          assert.is_true(ok)
          assert.is_nil(res, "try " .. i)
        end
      end
    end)

    it("never pays when verifyPayment answers for another session, or leaves the binding out", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local q = query_of { sessionId = B.session_id, referenceId = T.reference, status = "Authorized" }
          forge_answer(B.session_id, D.session_id)
          local ok, res = judge("notice: answer for another session", T, false, gateway():notification(as_request(nil, q)))
          assert.is_true(ok)
          assert.is_nil(res)
          forge_answer(B.session_id)
          forge_answer(D.session_id, nil, { referenceId = NULL, requestId = NULL })
          q = query_of { sessionId = D.session_id, referenceId = T.reference, status = "Authorized" }
          ok, res = judge("notice: unbound answer", T, false, gateway():notification(as_request(nil, q)))
          assert.is_true(ok)
          if res then assert.is_nil(res.reference) end
          forge_answer(D.session_id, nil, { referenceId = T.reference })
          -- a provider answer naming the target, for the donor's session, against a signed
          -- notice for the donor: the signed reference and the answer disagree
          ok, res = judge("notice: answer names T", T, false, gateway():notification(as_request(A.notices[1])))
          assert.is_true(ok)
          if D == A then assert.is_nil(res) end -- reference_mismatch
          forge_answer(D.session_id)
        end
      end
    end)

    it("does not let a forged notice poison the memory for the genuine one", function()
      local g = gateway()
      local e = A.notices[1]
      local q = e.query:gsub("&signature=[^&]*", ""):gsub("referenceId=[^&]*", "referenceId=" .. core.pct_encode(B.reference))
      assert.is_true(judge("notice: poison first", B, false, g:notification(as_request(e, q))))
      local ok, res = judge("notice: genuine after poison", B, false, g:notification(as_request(e)))
      assert.is_true(ok)
      assert.equal("paid", res.status)
      assert.equal(A.reference, res.reference)
    end)
  end)

  describe("of status checks", function()
    it("never pays an order with another order's session, user or transaction", function()
      for _, T in ipairs(targets()) do
        for _, D in ipairs(donors()) do
          local name = "status: " .. D.keep.pid .. " for " .. T.reference
          assert.is_true(judge(name, T, true, gw:status(D.session_id, T.keep)), name)
          assert.is_true(judge(name .. " table", T, true, gw:status({ session_id = D.session_id }, T.keep)), name)
        end
        assert.is_true(judge("status: user of A", T, true, gw:status({ userId = "user-a-" .. n }, T.keep)))
        assert.is_true(judge("status: txn of A", T, true, gw:status({ transactionId = A.txn }, T.keep)))
      end
      assert.is_true(judge("status: B itself", B, true, gw:status(B.session_id, B.keep)))
    end)

    it("never pays when verifyPayment answers for another session than the one asked about", function()
      forge_answer(B.session_id, A.session_id)
      local ok, res, err = judge("status: answered for A", B, true, gw:status(B.session_id, B.keep))
      assert.is_true(ok)
      assert.is_nil(res)
      assert.equal("session_mismatch", err.code)
      ok, res, err = judge("status: answered for A, no keep", B, true, gw:status(B.session_id))
      assert.is_true(ok)
      assert.is_nil(res)
      assert.equal("session_mismatch", err.code)
      forge_answer(B.session_id)
      forge_answer(A.session_id, nil, { requestId = NULL, referenceId = NULL })
      ok, res = judge("status: unbound", B, true, gw:status(A.session_id, B.keep))
      assert.is_true(ok)
      assert.equal("pending", res.status)
      assert.is_false(res.bound)
      forge_answer(A.session_id)
      -- a transaction lookup answered with a session that does not hold the transaction
      forge_answer(A.session_id, nil, { transactions = { "0000" } })
      ok, res = judge("status: txn not in answer", B, true, gw:status({ transactionId = A.txn }))
      assert.is_true(ok)
      assert.is_nil(res)
      forge_answer(A.session_id)
    end)
  end)

  describe("beyond the obvious", function()
    it("never pays when the provider's answer is inconsistent or oddly typed", function()
      for _, T in ipairs(targets()) do
        local q = { sid = A.session_id, sessionId = A.session_id, requestId = T.request_id,
                    referenceId = T.reference, status = "PaymentComplete" }
        local sets = {
          { requestId = T.request_id },                               -- requestId says T, referenceId says A
          { referenceId = T.reference },                              -- the other way round
          { requestId = 12345, referenceId = NULL },                  -- a number where an id belongs
          { requestId = { T.request_id }, referenceId = NULL },       -- an array
          { requestId = T.request_id:upper(), referenceId = NULL },   -- another spelling
          { sessionId = A.session_id:upper() },                       -- the session in capitals
          { sessionId = 42 },
          { sessionId = "" },
          { pid = "OTHER", requestId = NULL, referenceId = NULL },
        }
        for i, set in ipairs(sets) do
          forge_answer(A.session_id, nil, set)
          assert.is_true(judge("answer odd " .. i, T, true, gw:complete(q, T.keep)), "set " .. i)
          assert.is_true(judge("answer odd status " .. i, T, true, gw:status(A.session_id, T.keep)), "set " .. i)
          local nq = query_of { sessionId = A.session_id, referenceId = T.reference, status = "Authorized" }
          -- with the merchant's keep for the reference (as the shop passes it): bound to that purchase
          local keeps = { [T.reference] = T.keep, [A.reference] = A.keep }
          assert.is_true(judge("answer odd notice " .. i, T, false, gateway():notification(
            { method = "GET", path = "/n", query = nq }, { keep = function(ref) return keeps[ref] end })), "set " .. i)
        end
        forge_answer(A.session_id)
      end
    end)

    it("never pays with a buyer's other session found by userId", function()
      -- the same buyer starts order U, leaves it open, then pays another order V
      local U = order({}, "12000", nil, "user-u-" .. n)
      local V = order({}, "12000", "send-sms", "user-u-" .. n)
      assert.is_true(judge("status: userId latest is another order", U, true, gw:status({ userId = "user-u-" .. n }, U.keep)))
      assert.is_true(judge("status: user_id latest is another order", U, true, gw:status({ user_id = "user-u-" .. n }, U.keep)))
      local q = { sid = V.session_id, sessionId = V.session_id, requestId = U.request_id,
                  referenceId = U.reference, status = "PaymentComplete" }
      assert.is_true(judge("return: same buyer's other session", U, true, gw:complete(q, U.keep)))
      -- V itself is paid, and bound
      local st = assert(gw:status({ userId = "user-u-" .. n }, V.keep))
      assert.equal("paid", st.status)
      assert.is_true(st.bound)
    end)

    it("never pays an order from a notification without a query signature", function()
      for _, T in ipairs(targets()) do
        local e = A.notices[1]
        local p = { sessionId = A.session_id, referenceId = T.reference, status = "Authorized" }
        local base_q = query_of(p)
        local tries = {
          -- a Signature header as on API calls: not how notifications are signed; unsigned
          { method = "GET", path = e.uri:match("^[^?]*"), query = base_q,
            headers = { Signature = "ApiKey " .. sim.credentials.api_key .. ":AAAA" } },
          -- the parameters in a POSTed body only
          { method = "POST", path = "/n", query = "", body = base_q },
          -- a decoded table instead of a raw string
          { method = "GET", path = "/n", query = p },
          -- an uri with the query in it
          { method = "GET", uri = "/n?" .. base_q },
          -- "+" for a space in the reference
          { method = "GET", path = "/n", query = base_q:gsub("%%20", "+") },
          -- a very long reference
          { method = "GET", path = "/n", query = query_of { sessionId = A.session_id, status = "Authorized",
                                                           referenceId = T.reference .. string.rep("x", 5000) } },
        }
        for i, req in ipairs(tries) do
          assert.is_true(judge("notice: unsigned shape " .. i, T, false, gateway():notification(req)), "shape " .. i)
        end
      end
    end)

    it("never pays a failed or expired order whose signed notification is tampered with or replayed", function()
      local g = gateway { notify_url = base .. "/_sink/fn-" .. n }
      local log = sb.sink_log("fn-" .. n, 8)
      local mine = {}
      for _, e in ipairs(log) do
        local sid = e.query:match("sessionId=(%x+)")
        if sid == F.session_id or sid == B.session_id then mine[#mine + 1] = e end
      end
      assert.truthy(#mine >= 2)
      for _, e in ipairs(mine) do
        local target = e.query:find(F.session_id, 1, true) and F or B
        for _, word in ipairs { "Failed", "Cancelled" } do
          local q = e.query:gsub("status=" .. word, "status=Authorized")
          assert.is_true(judge("notice: signed " .. word .. " flipped", target, false,
            g:notification { method = "GET", path = e.uri:match("^[^?]*"), query = q }))
        end
        -- replayed as it is: the truth (failed), twice
        for _ = 1, 2 do
          assert.is_true(judge("notice: signed replay", target, false,
            g:notification { method = "GET", path = e.uri:match("^[^?]*"), query = e.query }))
        end
      end
      -- an expired session
      local E = order({}, "12000", "expire")
      local q = copy(E.ret, { status = "PaymentComplete" })
      assert.is_true(judge("return: expired flipped", E, true, gw:complete(q, E.keep)))
      assert.is_true(judge("status: expired", E, true, gw:status(E.session_id, E.keep)))
    end)

    it("never pays a purchase from a return whose keep was bound to another session", function()
      for _, D in ipairs(donors()) do
        local keep = copy(A.keep, { session_id = S.session_id })
        assert.is_true(judge("return: keep bound elsewhere", A, true, gw:complete(D.ret, keep)))
        assert.is_true(judge("status: keep bound elsewhere", A, true, gw:status(D.session_id, keep)))
      end
    end)
  end)

  it("never pays inside nginx either (cosocket transport): return, notification, status", function()
    local nginx = require "spec.support.nginx"
    local cjson = require "cjson.safe"
    local port = 18872
    local srv = nginx.start("forgery_mocopay_spec", [[
      server {
        listen 127.0.0.1:${PORT};
        location = /try { content_by_lua_block {
          local cjson = require "cjson.safe"
          local sim = require "paykit.sandbox.mocopay"
          local gw = require("paykit").mocopay { api_key = sim.credentials.api_key, api_secret = sim.credentials.api_secret,
                                                 base_url = "${SANDBOX}/mocopay", retry = false }
          ngx.req.read_body()
          local t = cjson.decode(ngx.req.get_body_data())
          local out = {}
          local function record(name, r, e)
            out[#out + 1] = { name = name, status = r and r.status or cjson.null, reference = r and r.reference or cjson.null,
                              err = e and e.code or cjson.null }
          end
          record("return", gw:complete(t.ret, t.keep))
          record("notice", gw:notification { method = "GET", path = "/n", query = t.notice })
          record("status", gw:status(t.donor, t.keep))
          ngx.header["Content-Type"] = "application/json"
          ngx.print(cjson.encode(out))
        } }
      }
    ]], { PORT = port, SANDBOX = base })
    local client = require("paykit.http").new { retry = false, timeout = 30 }
    for _, T in ipairs(targets()) do
      for _, D in ipairs(donors()) do
        local body = cjson.encode {
          keep = T.keep, donor = D.session_id,
          ret = { sid = D.session_id, sessionId = D.session_id, requestId = T.request_id, referenceId = T.reference,
                  status = "PaymentComplete" },
          notice = query_of { sessionId = D.session_id, referenceId = T.reference, status = "Authorized" },
        }
        local res = assert(client:request { method = "POST", url = "http://127.0.0.1:" .. port .. "/try", body = body })
        local out = assert(cjson.decode(res.body), res.body)
        assert.equal(3, #out)
        for _, o in ipairs(out) do
          local result = o.status ~= cjson.null and { status = o.status, reference = o.reference ~= cjson.null and o.reference or nil } or nil
          assert.is_true(judge("nginx " .. o.name .. " " .. D.keep.pid, T, o.name ~= "notice", result), o.name)
        end
      end
    end
    client:close()
    srv:stop()
  end)

  it("counted every forged case, and none was paid", function()
    io.stderr:write(string.format("\n[forgery mocopay] cases tried: %d, false paid: %d\n", tried, false_paid))
    assert.truthy(tried >= 200, "cases tried: " .. tried)
    assert.same({}, failures)
    assert.equal(0, false_paid)
  end)
end)
