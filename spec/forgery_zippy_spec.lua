-- Forged Zippy returns and callbacks, against the sandbox over real HTTP: replays across
-- orders, tampered, unsigned, swapped and duplicated fields, retired and unknown keys,
-- truncated and re-encoded signatures, amounts that differ from what was kept. Whatever the
-- forgery, paykit never answers "paid" for an order that was not paid, nor at another amount
-- or currency than the buyer paid. Every forged notice is also shown to the sandbox's own
-- verifier (POST /notices), which is independent of the client's code, where that verifier
-- must refuse it too.
local core = require "paykit.core"
local sb = require "spec.support.sandbox"
local zs = require "spec.support.zippy"
local sandbox = zs.sandbox

local KEY0, KEY1 = sandbox.NOTICE_KEYS[0], sandbox.NOTICE_KEYS[1]

-- A notice signed by anyone with any key: fields as a raw (already encoded) query string.
local function sign_raw(qs, key_id, key, digest)
  return qs .. "&sig=" .. key_id .. ":" .. core.hmac(digest or "sha256", key, qs, "hex")
end
local function enc(s) return core.pct_encode(s) end
local function body_of(notice) return "signed_notice=" .. enc(notice) end

describe("zippy forgeries", function()
  local z, orders, tried, false_paid, refused_by_server
  -- What the buyers really paid: the transaction's uuid -> {amount, currency} (a return is
  -- checked against the transaction it was kept for), and "ref:" .. ext_transaction_id (a
  -- callback names only that).
  local paid_orders = {}
  local function mark_paid(keep)
    paid_orders[keep.uuid] = { keep.amount, keep.currency }
    paid_orders["ref:" .. keep.ext_transaction_id] = { keep.amount, keep.currency }
  end

  -- A purchase on the sandbox; outcome "success", an error code, or nil (left unpaid).
  local function order(product, outcome, over)
    local tag = zs.id("forge")
    local p = zs.tx_fields(product, tag, over)
    p.amount, p.price = p.price, nil
    p.reference, p.ext_transaction_id = p.ext_transaction_id, nil
    local r = assert(z:purchase(p))
    local o = { keep = r.keep, ref = r.keep.ext_transaction_id, tag = tag }
    if outcome then
      local res = sb.post_json("/zippy/_sandbox/pay", { token = r.keep.token, outcome = outcome })
      assert.are.equal(200, res.status)
      o.location, o.notice = res.json.Location, res.json.signed_notice
      o.query = zs.query_of(o.location)
      local log = zs.sink_log(tag .. (outcome == "success" and "-cbok" or "-cberr"))
      o.callback = log[#log].body
      if outcome == "success" then mark_paid(r.keep) end
    end
    return o
  end

  lazy_setup(function()
    sb.start()
    z = zs.client()
    local _, product = zs.product(z)
    orders = {}
    orders.A = order(product, "success")                       -- paid, 0.89 EUR
    orders.B = order(product, nil)                             -- started, never paid
    orders.F = order(product, "CC_ERROR")                      -- declined
    orders.D = order(product, "DIR_BILL_ERROR", { pay_method = "OPERATOR" })
    orders.U = order(product, nil, { price = "250.00" })       -- expensive, never paid
    sb.post_json("/zippy/_sandbox/keys", { sign_with = 0 })
    orders.C = order(product, "success")                       -- paid, notice signed with key 0
    sb.post_json("/zippy/_sandbox/keys", { sign_with = 1 })
    tried, false_paid, refused_by_server = 0, {}, 0
  end)
  lazy_teardown(function()
    sb.post_json("/zippy/_sandbox/keys", { sign_with = 1 })
    sb.stop()
  end)

  -- Whether a result is a false "paid": paid for an order that was not paid, or at an amount
  -- or currency other than what the buyer paid.
  local function is_false_paid(result, key)
    if type(result) ~= "table" or result.status ~= "paid" then return false end
    local truth = paid_orders[key]
    if not truth then return true end
    -- a callback carries no amount (the shop's own record has it); a return has the kept one
    if result.amount == nil and result.currency == nil then return false end
    return result.amount ~= truth[1] or result.currency ~= truth[2]
  end

  local function record(label, result, key)
    tried = tried + 1
    if is_false_paid(result, key) then false_paid[#false_paid + 1] = label end
  end

  -- The sandbox's verifier (the reference server's POST /notices) must refuse it too.
  local function server_refuses(label, notice)
    local ok, why = z:check_notice(notice)
    if ok == true then return label .. ": the sandbox's own verifier accepted it" end
    refused_by_server = refused_by_server + 1
    return nil, why
  end

  -- complete(query, keep of `target`): refused with a signature or validation error.
  local function complete_refused(label, query, target, code, opts)
    opts = opts or {}
    local client = opts.client or z
    local result, err = client:complete(query, orders[target].keep)
    record("complete " .. label, result, orders[target].keep.uuid)
    assert.is_nil(result, label .. ": accepted as " .. tostring(result and result.status))
    assert.is_table(err, label)
    assert.is_true(err.kind == "signature" or err.kind == "validation", label .. ": " .. tostring(err))
    if code then assert.are.equal(code, err.code, label .. ": " .. tostring(err)) end
    if opts.server ~= false then
      local bad = server_refuses(label, (opts.notice or query):gsub("^.-%?(ext_transaction_id=)", "%1"))
      assert.is_nil(bad)
    end
  end

  -- notification(body): refused, 400.
  local function callback_refused(label, body, code)
    local result, err, reply = z:notification { method = "POST", body = body }
    record("notification " .. label, result, result and ("ref:" .. tostring(result.reference)))
    assert.is_nil(result, label .. ": accepted as " .. tostring(result and result.status))
    assert.are.equal("signature", err.kind, label .. ": " .. tostring(err))
    if code then assert.are.equal(code, err.code, label .. ": " .. tostring(err)) end
    assert.are.equal(400, reply.status)
  end

  describe("on the buyer's return (complete)", function()
    it("accepts the genuine notices, at the kept amount (the controls)", function()
      local a = assert(z:complete(orders.A.query, orders.A.keep))
      assert.are.equal("paid", a.status)
      assert.are.equal("0.89", a.amount)
      assert.are.equal("failed", assert(z:complete(orders.F.query, orders.F.keep)).status)
      assert.are.equal("failed", assert(z:complete(orders.D.query, orders.D.keep)).status)
      assert.are.equal("paid", assert(z:complete(orders.C.query, orders.C.keep)).status)
    end)

    it("refuses A's genuine notice replayed on B's return", function()
      complete_refused("replay A on B", orders.A.query, "B", "wrong_transaction", { server = false })
      complete_refused("replay A on U", orders.A.query, "U", "wrong_transaction", { server = false })
      complete_refused("replay C (key 0) on B", orders.C.query, "B", "wrong_transaction", { server = false })
      complete_refused("replay A on F", orders.A.query, "F", "wrong_transaction", { server = false })
    end)

    it("refuses A's notice with B's ext_transaction_id put in", function()
      local A, B = orders.A, orders.B
      local forged = A.notice:gsub("^ext_transaction_id=[^&]*", "ext_transaction_id=" .. enc(B.ref))
      complete_refused("A's sig on B's id", forged, "B", "bad_signature")
      complete_refused("A's sig on B's id, uppercase hex", forged:gsub("(:)(%x+)$", function(c, h) return c .. h:upper() end),
        "B", "bad_signature")
    end)

    it("refuses unsigned and half-signed notices", function()
      local B = orders.B
      local qs = "ext_transaction_id=" .. enc(B.ref)
      complete_refused("unsigned", qs, "B", "unsigned", { server = false })
      complete_refused("empty sig", qs .. "&sig=", "B", "malformed")
      complete_refused("sig without id", qs .. "&sig=" .. ("0"):rep(64), "B", "malformed")
      complete_refused("id without sig", qs .. "&sig=1:", "B", "malformed")
      complete_refused("sig first", "sig=1:" .. ("a"):rep(64) .. "&" .. qs, "B", "unsigned", { server = false })
      complete_refused("SIG uppercase", qs .. "&SIG=1:" .. ("a"):rep(64), "B", "unsigned", { server = false })
      complete_refused("sig percent-encoded", qs .. "&sig=1%3A" .. ("a"):rep(64), "B", "malformed")
      complete_refused("sig=; in place of &sig=", qs .. ";sig=1:" .. ("a"):rep(64), "B", "unsigned", { server = false })
    end)

    it("refuses notices signed with a key that is unknown, retired or not Zippy's", function()
      local B = orders.B
      local qs = "ext_transaction_id=" .. enc(B.ref)
      complete_refused("unknown key id 7", sign_raw(qs, 7, "attacker"), "B", "unknown_key")
      complete_refused("attacker's key as id 1", sign_raw(qs, 1, "attacker"), "B", "bad_signature")
      complete_refused("key 0's secret labelled 1", sign_raw(qs, 1, KEY0), "B", "bad_signature")
      -- (the reference server, reading id 0 as "the newest key", would take this one: paykit does not)
      complete_refused("key 1's secret labelled 0", sign_raw(qs, 0, KEY1), "B", "bad_signature", { server = false })
      complete_refused("consumer secret as the key", sign_raw(qs, 1, sandbox.CONSUMER_SECRET), "B", "bad_signature")
      complete_refused("empty key", sign_raw(qs, 1, ""), "B", "bad_signature")
      complete_refused("HMAC-SHA1", sign_raw(qs, 1, KEY1, "sha1"), "B", "malformed")
      complete_refused("plain SHA-256 of the query", qs .. "&sig=1:" .. core.digest("sha256", qs, "hex"), "B", "bad_signature")
      complete_refused("HMAC over id and query", qs .. "&sig=1:" .. core.hmac("sha256", KEY1, "1:" .. qs, "hex"), "B", "bad_signature")
      -- the shop rotated key 0 out: a notice signed with the retired (perhaps leaked) key is refused
      local rotated = zs.client { notice_keys = { [1] = KEY1 } }
      complete_refused("retired key 0 (leaked)", sign_raw(qs, 0, KEY0), "B", "unknown_key",
        { client = rotated, server = false })
      complete_refused("retired key 0, genuine C notice", orders.C.query, "C", "unknown_key",
        { client = rotated, server = false })
    end)

    it("refuses truncated, padded and mangled signatures", function()
      local A = orders.A
      local base, sig = A.notice:match("^(.*&sig=1:)(%x+)$")
      assert.are.equal(64, #sig)
      complete_refused("sig cut to 63", base .. sig:sub(1, 63), "A", "malformed")
      complete_refused("sig cut to 32", base .. sig:sub(1, 32), "A", "malformed")
      complete_refused("sig cut to 8", base .. sig:sub(1, 8), "A", "malformed")
      complete_refused("sig plus a digit", base .. sig .. "0", "A", "malformed")
      complete_refused("sig last digit changed", base .. sig:sub(1, 63) .. (sig:sub(64) == "0" and "1" or "0"), "A", "bad_signature")
      complete_refused("sig first digit changed", base .. (sig:sub(1, 1) == "0" and "1" or "0") .. sig:sub(2), "A", "bad_signature")
      complete_refused("sig with a space", base .. " " .. sig, "A", "malformed")
      complete_refused("sig base64", base .. core.b64_encode(core.hex_decode(sig)), "A", "malformed")
      complete_refused("key id +1", (A.notice:gsub("&sig=1:", "&sig=+1:")), "A", "malformed")
      complete_refused("key id -1", (A.notice:gsub("&sig=1:", "&sig=-1:")), "A", "malformed")
      complete_refused("key id 10 digits", (A.notice:gsub("&sig=1:", "&sig=1000000001:")), "A", "malformed")
      complete_refused("junk after sig", A.notice .. "&x=1", "A", "malformed")
      complete_refused("a second sig after", A.notice .. "&sig=1:" .. ("f"):rep(64), "A", "bad_signature")
      complete_refused("NUL after sig", A.notice .. "\0", "A", "malformed", { server = false })
    end)

    it("refuses a declined notice turned into a paid one", function()
      for _, o in ipairs { orders.F, orders.D } do
        local qs, sig = o.notice:match("^(.*)&sig=(.*)$")
        local id = "ext_transaction_id=" .. enc(o.ref)
        local code = o.notice:match("&error=([^&]*)")
        complete_refused(code .. " error removed", id .. "&sig=" .. sig, o == orders.F and "F" or "D", "bad_signature")
        complete_refused(code .. " error emptied", id .. "&error=&sig=" .. sig, o == orders.F and "F" or "D", "bad_signature")
        complete_refused(code .. " error renamed", (qs:gsub("&error=", "&errors=")) .. "&sig=" .. sig, o == orders.F and "F" or "D", "bad_signature")
        complete_refused(code .. " fields swapped", "error=" .. code .. "&" .. id .. "&sig=" .. sig, o == orders.F and "F" or "D", "bad_signature")
        complete_refused(code .. " error after sig", id .. "&sig=" .. sig .. "&error=" .. code, o == orders.F and "F" or "D", "malformed")
      end
      -- the paid notice's signature on the declined order's query
      local F = orders.F
      local a_sig = orders.A.notice:match("&sig=(.*)$")
      complete_refused("A's sig on F's id", "ext_transaction_id=" .. enc(F.ref) .. "&sig=" .. a_sig, "F", "bad_signature")
    end)

    it("refuses duplicated parameters and notices glued to other notices", function()
      local A, B, F = orders.A, orders.B, orders.F
      local idB = "ext_transaction_id=" .. enc(B.ref)
      -- B's id first, then A's whole notice: the notice found is A's, which is not B's
      complete_refused("B's id then A's notice", idB .. "&" .. A.notice, "B", "wrong_transaction", { server = false })
      complete_refused("B's id ? A's notice", idB .. "?" .. A.notice, "B", "wrong_transaction", { server = false })
      -- A's id then B's id under A's signature
      local a_qs, a_sig = A.notice:match("^(.*)&sig=(.*)$")
      complete_refused("A's id then B's id, A's sig", a_qs .. "&" .. idB .. "&sig=" .. a_sig, "B", "bad_signature")
      complete_refused("two ext ids in one value", a_qs .. "%26" .. idB .. "&sig=" .. a_sig, "B", "bad_signature")
      -- two error values, or two notices back to back
      local f_qs, f_sig = F.notice:match("^(.*)&sig=(.*)$")
      complete_refused("two error values", f_qs .. "&error=&sig=" .. f_sig, "F", "bad_signature")
      complete_refused("F's notice then A's sig", F.notice .. "&sig=" .. a_sig, "F", "bad_signature")
      complete_refused("A's notice twice on B", A.notice .. "&" .. A.notice, "B", "wrong_transaction", { server = false })
      -- the ids differ only by encoding
      complete_refused("B's id encoded with +", (idB:gsub("%%20", "+")) .. "&sig=" .. a_sig, "B", "bad_signature")
    end)

    it("refuses the forgeries in the reference server's '?' form too", function()
      local A, B = orders.A, orders.B
      local forged = A.notice:gsub("^ext_transaction_id=[^&]*", "ext_transaction_id=" .. enc(B.ref))
      complete_refused("? A's sig on B's id", "order=7?" .. forged, "B", "bad_signature", { notice = forged })
      complete_refused("? A's notice on B", "order=7?" .. A.notice, "B", "wrong_transaction", { server = false })
      complete_refused("? unsigned", "order=7?ext_transaction_id=" .. enc(B.ref), "B", "unsigned", { server = false })
      complete_refused("? B's id as the shop's parameter", "ext_transaction_id=" .. enc(B.ref) .. "?" .. A.notice, "B",
        "wrong_transaction", { server = false })
      complete_refused("? the notice split by the shop's ?", (A.notice:gsub("&sig=", "?sig=")), "A", "unsigned", { server = false })
      complete_refused("? percent-encoded ?", "order=7%3F" .. forged, "B", "bad_signature", { notice = forged })
      local F = orders.F
      local f_sig = F.notice:match("&sig=(.*)$")
      complete_refused("? error dropped", "order=7?ext_transaction_id=" .. enc(F.ref) .. "&sig=" .. f_sig, "F", "bad_signature",
        { notice = "ext_transaction_id=" .. enc(F.ref) .. "&sig=" .. f_sig })
    end)

    it("takes the amount and currency from what was kept, never from the query", function()
      local A = orders.A
      -- the shop's own query before the notice is not signed: a price there changes nothing
      local q = "price=0.01&currency=USD&amount=0.01?" .. A.notice
      local r = assert(z:complete(q, A.keep))
      record("complete unsigned price before A's notice", r, A.keep.uuid)
      assert.are.equal("0.89", r.amount)
      assert.are.equal("EUR", r.currency)
      -- a kept amount that was changed after the purchase is what the result says, and is
      -- then a false paid by this suite's measure: the keep is the shop's own record and
      -- must be stored where the buyer cannot change it (a control of the measure itself)
      local changed = {}
      for k, v in pairs(A.keep) do changed[k] = v end
      changed.amount = "250.00"
      assert.is_true(is_false_paid(assert(z:complete(A.query, changed)), A.keep.uuid))
      -- a forged notice with price fields, and A's signature over B with an amount
      complete_refused("signed-looking notice with a price",
        sign_raw("ext_transaction_id=" .. enc(orders.U.ref) .. "&price=0.01&currency=EUR", 1, "attacker"), "U", "bad_signature")
      complete_refused("A's notice on the 250.00 order", A.query, "U", "wrong_transaction", { server = false })
    end)

    it("binds each transaction of one reference: the cheap one's notice never pays the dear one", function()
      -- Zippy's notice names only ext_transaction_id; paykit makes it unique per transaction
      local U = orders.U
      local _, product = zs.product(z)
      local p = zs.tx_fields(product, zs.id("cheap"), { price = "0.01" })
      p.ext_transaction_id, p.reference = nil, U.keep.reference
      local cheap = assert(z:purchase(p))
      local paid = sb.post_json("/zippy/_sandbox/pay", { token = cheap.keep.token }).json
      mark_paid(cheap.keep)
      complete_refused("cheap transaction of U's reference on U", zs.query_of(paid.Location), "U", "wrong_transaction",
        { server = false })
      local n = assert(z:notification { method = "POST", body = body_of(paid.signed_notice) })
      record("notification cheap transaction of U's reference", n, "ref:" .. n.reference)
      assert.are_not.equal(U.keep.ext_transaction_id, n.reference)
    end)

    it("binds the transaction across shops: another shop's notice for the same reference is not yours", function()
      -- Zippy signs every shop's notices with the same keys
      local shop2 = zs.client()
      local _, product2 = zs.product(shop2)
      local p = zs.tx_fields(product2, zs.id("shop2"))
      p.ext_transaction_id, p.reference = nil, orders.B.keep.reference
      local theirs = assert(shop2:purchase(p))
      local paid = sb.post_json("/zippy/_sandbox/pay", { token = theirs.keep.token }).json
      mark_paid(theirs.keep)
      complete_refused("another shop's notice, same reference", zs.query_of(paid.Location), "B", "wrong_transaction",
        { server = false })
      local n = assert(z:notification { method = "POST", body = body_of(paid.signed_notice) })
      record("notification another shop's notice, same reference", n, "ref:" .. n.reference)
      assert.are_not.equal(orders.B.keep.ext_transaction_id, n.reference)
    end)

    it("refuses a second transaction of one id sent as it is at another amount or currency", function()
      -- with reference_nonce = false the id is the reference, so paykit refuses to start the
      -- second transaction that could not be told apart
      local plain = zs.client { reference_nonce = false }
      local _, product = zs.product(plain)
      local ref = zs.id("plain")
      local p = zs.tx_fields(product, zs.id("plain"), { price = "250.00" })
      p.ext_transaction_id, p.reference = nil, ref
      assert(plain:purchase(p))
      for _, over in ipairs { { price = "0.01" }, { currency = "USD", price = "250.00" } } do
        local q = zs.tx_fields(product, zs.id("reuse"), over)
        q.ext_transaction_id, q.reference = nil, ref
        local r, err = plain:purchase(q)
        tried = tried + 1
        assert.is_nil(r)
        assert.are.equal("reference", err.field)
        assert.are.equal("reused", err.code)
      end
      -- the same through create_transaction, with Zippy's own name
      local t = zs.tx_fields(product, zs.id("reuse"), { price = "0.02", ext_transaction_id = ref })
      local r, err = plain:create_transaction(t)
      tried = tried + 1
      assert.is_nil(r)
      assert.are.equal("ext_transaction_id", err.field)
      assert.are.equal("reused", err.code)
      -- the same amount again is a retry of the same order: allowed
      local again = zs.tx_fields(product, zs.id("reuse"), { price = "250.00" })
      again.ext_transaction_id, again.reference = nil, ref
      assert(plain:purchase(again))
    end)
  end)

  describe("on the callback (notification)", function()
    it("accepts the genuine callbacks (the controls), a repeat flagged as a duplicate", function()
      local n = assert(z:notification { method = "POST", body = orders.A.callback })
      assert.are.equal("paid", n.status)
      assert.are.equal(orders.A.ref, n.reference)
      assert.is_true(assert(z:notification { method = "POST", body = orders.A.callback }).duplicate)
      assert.are.equal("failed", assert(z:notification { method = "POST", body = orders.F.callback }).status)
    end)

    it("never turns A's callback into B's payment", function()
      -- replayed as is: it is A's (paid) notice and says so, never B's
      local n = assert(z:notification { method = "POST", body = orders.A.callback })
      record("notification replay A", n, "ref:" .. n.reference)
      assert.are.equal(orders.A.ref, n.reference)
      local forged = orders.A.notice:gsub("^ext_transaction_id=[^&]*", "ext_transaction_id=" .. enc(orders.B.ref))
      callback_refused("A's sig on B's id", body_of(forged), "bad_signature")
      callback_refused("B's id glued before A's notice", body_of("ext_transaction_id=" .. enc(orders.B.ref) .. "&" .. orders.A.notice), "bad_signature")
      callback_refused("A's and a forged notice", orders.A.callback .. "&" .. body_of(forged), "malformed")
      callback_refused("forged then A's notice", body_of(forged) .. "&" .. orders.A.callback, "malformed")
    end)

    it("refuses unsigned, unknown-key, retired-key and truncated callbacks", function()
      local qs = "ext_transaction_id=" .. enc(orders.B.ref)
      callback_refused("unsigned", body_of(qs), "unsigned")
      callback_refused("notice not wrapped in signed_notice", sign_raw(qs, 1, "attacker"), "unsigned")
      callback_refused("notice not url-encoded", "signed_notice=" .. sign_raw(qs, 1, KEY0), "unsigned")
      callback_refused("unknown key", body_of(sign_raw(qs, 9, "attacker")), "unknown_key")
      callback_refused("wrong key", body_of(sign_raw(qs, 1, "attacker")), "bad_signature")
      callback_refused("consumer secret", body_of(sign_raw(qs, 1, sandbox.CONSUMER_SECRET)), "bad_signature")
      callback_refused("truncated sig", body_of(orders.A.notice:sub(1, -2)), "malformed")
      callback_refused("empty signed_notice", "signed_notice=", "unsigned")
      callback_refused("NUL in notice", body_of(orders.A.notice .. "\0"), "malformed")
      callback_refused("empty body", "", "unsigned")
      local rotated = zs.client { notice_keys = { [1] = KEY1 } }
      local r, err = rotated:notification { method = "POST", body = body_of(sign_raw(qs, 0, KEY0)) }
      record("notification retired key", r, "ref:" .. orders.B.ref)
      assert.is_nil(r)
      assert.are.equal("unknown_key", err.code)
    end)

    it("refuses a forged notice in the query when the body is empty, and a query notice beside a body", function()
      local forged = orders.A.notice:gsub("^ext_transaction_id=[^&]*", "ext_transaction_id=" .. enc(orders.B.ref))
      local r, err = z:notification { method = "POST", body = "", query = forged }
      record("notification forged notice in the query", r, r and ("ref:" .. r.reference))
      assert.is_nil(r)
      assert.are.equal("bad_signature", err.code)
      -- a genuine body wins over a forged query: the result is A's, never B's
      local n = assert(z:notification { method = "POST", body = orders.A.callback, query = forged })
      record("notification genuine body, forged query", n, "ref:" .. n.reference)
      assert.are.equal(orders.A.ref, n.reference)
    end)

    it("refuses a declined callback turned into a paid one", function()
      local F = orders.F
      local sig = F.notice:match("&sig=(.*)$")
      local id = "ext_transaction_id=" .. enc(F.ref)
      callback_refused("error removed", body_of(id .. "&sig=" .. sig), "bad_signature")
      callback_refused("error emptied", body_of(id .. "&error=&sig=" .. sig), "bad_signature")
      callback_refused("fields swapped", body_of("error=CC_ERROR&" .. id .. "&sig=" .. sig), "bad_signature")
      callback_refused("error outside the notice", body_of(id .. "&sig=" .. sig) .. "&error=CC_ERROR", "bad_signature")
    end)
  end)

  describe("the status look-up", function()
    it("never says paid: Zippy has none, the signed notice is the only word", function()
      for _, k in ipairs { "A", "B", "U" } do
        local r, err = z:status(orders[k].ref)
        record("status " .. k, r, orders[k].keep.uuid)
        assert.is_nil(r)
        assert.are.equal("unsupported", err.code)
      end
    end)
  end)

  describe("in total", function()
    it("tried every forgery and found no false paid", function()
      print(("\nzippy forgeries: %d cases tried, %d false paid, %d also refused by the sandbox's own verifier")
        :format(tried, #false_paid, refused_by_server))
      assert.is_true(tried >= 80, tried .. " cases")
      assert.are.same({}, false_paid)
    end)
  end)
end)
