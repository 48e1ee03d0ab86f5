-- The fixtures of README's doc tests (spec/readme_spec.lua, whose header says how to add one):
-- the merchant's own functions and values that README's Lua blocks use (save_order,
-- load_order, redirect_browser, grant_item_once, the fields the buyer's browser posts, ...),
-- with real behaviour: the buyer's trip is made over HTTP against the sandbox, as its pages'
-- buttons do (examples/sandbox_buyer.lua), and paykit itself is never replaced.
--
-- Loaded by the spec (plain Lua 5.4 / LuaJIT) and, for blocks that use ngx, inside the spec's
-- nginx (M.serve): only what runs where the block runs may touch ngx.
local cjson = require "cjson.safe"
local core = require "paykit.core"
-- luassert where it is installed (it is callable like assert); plain assert otherwise
local has_luassert, luassert = pcall(require, "luassert")
local assert = has_luassert and luassert or assert

local M = {}

-- The sandbox's credentials (README's sandbox section).
local MOKA = { dealer_code = "1730", username = "sandbox", password = "sandbox-pass" }
local MOCOPAY = { api_key = "sandbox-app", api_secret = "sandbox-secret" }
local ZIPPY = { consumer_key = "sandbox-key", consumer_secret = "sandbox-secret",
                notice_keys = { [0] = "zippy-notice-secret-0", [1] = "zippy-notice-secret-1" } }

---------------------------------------------------------------------------- helpers

local client
-- One HTTP request over the C core's client (plain Lua: fixtures' functions and setup).
local function http(method, url, body, headers)
  client = client or core.http_client { timeout = 10000 }
  local res, err = client:request { method = method, url = url, body = body, headers = headers or {} }
  assert(res, "fixture: " .. method .. " " .. url .. ": " .. tostring(err))
  res.json = cjson.decode(res.body)
  return res
end

local function post_json(url, value)
  local res = http("POST", url, cjson.encode(value), { ["Content-Type"] = "application/json" })
  assert(res.status == 200 and type(res.json) == "table", "fixture: POST " .. url .. ": " .. res.status .. " " .. res.body)
  return res.json
end

local function origin(url) return assert(url:match("^(https?://[^/]+)"), "not an absolute URL: " .. tostring(url)) end

-- What the sandbox's sink `name` received, waiting up to 10 s for at least one request.
local function sink(base, name)
  for _ = 1, 200 do
    local list = http("GET", base .. "/_sink/" .. name .. "/log").json
    if type(list) == "table" and #list > 0 then return list end
    core.sleep(0.05)
  end
  error("fixture: nothing reached the sink " .. name)
end

local function sink_name(what) return "readme-" .. what .. "-" .. core.random_hex(4) end

-- The merchant's order store: save_order(id, keep), load_order(id) (by any key the block uses).
local function orders(rec)
  rec.saved, rec.loaded = {}, {}
  local kept = {}
  local function save_order(id, keep)
    assert(id ~= nil and type(keep) == "table", "save_order(id, keep): got " .. tostring(id) .. ", " .. tostring(keep))
    kept[id] = keep
    rec.saved[#rec.saved + 1] = tostring(id)
  end
  local function load_order(id) -- (lookup's second argument, Moka's trxCode, is not a key here)
    rec.loaded[#rec.loaded + 1] = tostring(id)
    return kept[id]
  end
  return save_order, load_order
end

-- The buyer's browser: opens the provider's page (redirect_url), then clicks as told.
-- click(base, url) returns what the browser then posts or carries back.
local function browser(rec, click)
  return function(url)
    assert(type(url) == "string", "redirect_browser(url): got " .. tostring(url))
    rec.redirected = url
    local page = http("GET", url)
    assert(page.status == 200, "the provider's page " .. url .. " answered " .. page.status)
    rec.page_status = page.status
    rec.back = click(origin(url), url)
  end
end

-- A lazy global: the value the browser brought back, once redirect_browser has run.
local function brought_back(rec, name)
  return function()
    assert(rec.back ~= nil, name .. " is read before redirect_browser sent the buyer anywhere")
    return rec.back
  end
end

local function moka_approve(base, url)
  local trx = assert(url:match("threeDTrxCode=([%w%-]+)"), "no threeDTrxCode in " .. url)
  return post_json(base .. "/moka/_sandbox/3d/complete", { threeDTrxCode = trx, action = "approve" }).Fields
end

local function fields_of(t, names)
  if type(t) ~= "table" then return nil end
  local out = {}
  for _, k in ipairs(names) do
    local v = t[k]
    if type(v) == "table" then v = nil end
    out[k] = v
  end
  return out
end
local RESULT = { "status", "reference", "amount", "currency", "code", "duplicate", "session_id", "provider_reference" }
local function result(t) return fields_of(t, RESULT) end
local function reply(t) return fields_of(t, { "status", "body" }) end
local function errinfo(e) return e and fields_of(e, { "kind", "code", "field", "retryable" }) or nil end

---------------------------------------------------------------------------- the fixtures

-- The uniform flow (Moka 3D): the buyer approves on the 3D page and POSTs back.
M.moka_return = {
  globals = function(_, rec)
    local save_order, load_order = orders(rec)
    rec.granted = {}
    return {
      save_order = save_order, load_order = load_order,
      redirect_browser = browser(rec, moka_approve),
      grant_item_once = function(id) rec.granted[#rec.granted + 1] = id end,
    }, { posted_form_fields = brought_back(rec, "posted_form_fields") }
  end,
  summary = function(l, rec)
    return { r = result(l.r), result = result(l.result), granted = rec.granted, saved = rec.saved,
             loaded = rec.loaded, page = rec.page_status }
  end,
  check = function(s)
    assert.equal("redirect", s.r.status)
    assert.same({ "17" }, s.saved); assert.same({ "17" }, s.loaded)
    assert.equal(200, s.page)
    assert.equal("paid", s.result.status)
    assert.equal("order-17", s.result.reference)
    assert.equal("27.50", s.result.amount)
    assert.same({ 17 }, s.granted)
  end,
}

-- Moka's section: 3D purchase, the return confirmed with Moka, then Moka's own notification
-- (the sandbox POSTs it to the dealer's NotifyUrl, here a sink whose body is raw_body).
M.moka_3d = {
  setup = function(t)
    local name = sink_name("moka")
    assert.equal(200, t.sb.post_json("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = t.sandbox .. "/_sink/" .. name }).status)
    return { sandbox = t.sandbox, sink = name }
  end,
  globals = function(data, rec)
    local save_order, load_order = orders(rec)
    return {
      buyer_ip = "203.0.113.7", pan = "4111111111111111", cvc = "123",
      save_order = save_order, load_order = load_order,
      redirect_browser = browser(rec, moka_approve),
    }, {
      posted_fields = brought_back(rec, "posted_fields"),
      raw_body = function() return sink(data.sandbox, data.sink)[1].body end,
    }
  end,
  summary = function(l, rec)
    -- a refused notification answers nil, err, reply: then l.reply is the error
    return { r = result(l.r), done = result(l.done), err = errinfo(l.err), n = result(l.n),
             reply = l.n and reply(l.reply) or nil, refused = (not l.n) and errinfo(l.reply) or nil,
             saved = rec.saved, loaded = rec.loaded }
  end,
  check = function(s)
    assert.equal("redirect", s.r.status)
    assert.is_nil(s.err)
    assert.equal("paid", s.done.status); assert.equal("order-17", s.done.reference)
    assert(s.n, "the notification was refused: " .. cjson.encode(s.refused))
    assert.equal("paid", s.n.status); assert.equal("order-17", s.n.reference)
    assert.same({ status = 200, body = "OK" }, s.reply)
    -- the notification's CodeForHash came through lookup = load_order, by the posted OtherTrxCode
    assert.same({ "order-17" }, s.saved); assert.same({ "order-17", "order-17" }, s.loaded)
  end,
  teardown = function()
    require("spec.support.sandbox").post_json("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = "" })
  end,
}

-- Moka's codes table.
M.moka_codes = {
  summary = function(l) return { code = l.code, message = l.message } end,
  check = function(s)
    assert.equal("moka.bank.transaction_not_open_to_cardholder", s.code)
    assert.is_truthy(s.message:match("%S"))
  end,
}

-- MoCoPay's purchase: the buyer opens the checkout page and sends the SMS.
M.mocopay_purchase = {
  globals = function(_, rec)
    local save_order, load_order = orders(rec)
    return { buyer_ip = "203.0.113.7", save_order = save_order, load_order = load_order,
      redirect_browser = browser(rec, function(base, url)
        local trn = assert(url:match("trn=(%w+)"), "no trn in " .. url)
        return post_json(base .. "/mocopay/_sandbox/act", { trn = trn, action = "send-sms" })
      end) }
  end,
  summary = function(l, rec)
    return { r = result(l.r), saved = rec.saved, back = rec.back and rec.back.Location, page = rec.page_status }
  end,
  check = function(s)
    assert.equal("redirect", s.r.status); assert.equal("order-42", s.r.reference)
    assert.same({ "order-42" }, s.saved); assert.equal(200, s.page)
    -- the sandbox sent the buyer back to the purchase's return_url, the session paid
    assert.is_truthy(s.back:match("^https://shop%.example/return/mocopay%?.*status=PaymentComplete"))
  end,
}

-- MoCoPay, earlier: a purchase of order-42 and the buyer's SMS (notify_url: a sink).
local function mocopay_paid(t)
  local paykit = require "paykit"
  local gw = assert(paykit.mocopay { api_key = MOCOPAY.api_key, api_secret = MOCOPAY.api_secret, base_url = t.sandbox .. "/mocopay" })
  local name = sink_name("mocopay")
  local r = assert(gw:purchase { pid = "12000", reference = "order-42", client_ip = "203.0.113.7",
    return_url = "https://shop.example/return/mocopay", notify_url = t.sandbox .. "/_sink/" .. name })
  local back = post_json(t.sandbox .. "/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" })
  local note = sink(t.sandbox, name)[1]
  return { sandbox = t.sandbox, keep = r.keep, return_query = back.Location:match("%?(.*)$"),
           notify_path = "/_sink/" .. name, notify_query = note.query }
end

-- The instance a shop's nginx handler uses (README's MoCoPay block creates it the same way).
local function mocopay_globals(data, rec)
  local save_order, load_order = orders(rec)
  save_order(data.keep.reference_id, data.keep)
  return { mocopay = assert(require("paykit").mocopay { api_key = MOCOPAY.api_key, api_secret = MOCOPAY.api_secret,
                                                        base_url = data.sandbox .. "/mocopay" }),
           load_order = load_order }
end

-- MoCoPay's return handler: nginx gets the buyer's return query.
M.mocopay_return = {
  setup = mocopay_paid,
  globals = mocopay_globals,
  request = function(data) return { path = "/return/mocopay", query = data.return_query } end,
  summary = function(l, rec) return { done = result(l.done), st = result(l.st), loaded = rec.loaded } end,
  check = function(s)
    assert.same({ "order-42" }, s.loaded)
    assert.equal("paid", s.done.status); assert.equal("order-42", s.done.reference)
    assert.equal("paid", s.st.status); assert.equal("order-42", s.st.reference)
  end,
}

-- MoCoPay's notification handler: nginx gets the signed GET the sandbox sent to notify_url.
M.mocopay_notify = {
  setup = mocopay_paid,
  globals = mocopay_globals,
  request = function(data) return { path = data.notify_path, query = data.notify_query } end,
  summary = function(l, rec) return { n = result(l.n), reply = reply(l.reply), loaded = rec.loaded } end,
  check = function(s)
    assert.equal("paid", s.n.status); assert.equal("order-42", s.n.reference)
    assert.is_false(s.n.duplicate)
    assert.equal(200, s.reply.status)
    assert.same({ "order-42" }, s.loaded)
  end,
}

-- Zippy's purchase: the buyer pays on the hosted page.
M.zippy_purchase = {
  globals = function(_, rec)
    local save_order, load_order = orders(rec)
    return { save_order = save_order, load_order = load_order,
      redirect_browser = browser(rec, function(_, url)
        assert(url:match("/payment/start%?tx="), "not Zippy's payment page: " .. url)
        return true
      end) }
  end,
  summary = function(l, rec)
    local product = l.zippy and l.product and l.zippy:get_product(l.product)
    return { r = result(l.r), saved = rec.saved, page = rec.page_status, product = product and product.uuid,
             token = l.r and l.r.keep and l.r.keep.token }
  end,
  check = function(s)
    assert.equal("redirect", s.r.status)
    assert.is_truthy(s.r.reference:match("^order%-9~%x+$"))
    assert.same({ s.r.reference }, s.saved); assert.equal(200, s.page)
    assert.equal("0f8fad5b-d9cb-469f-a165-70867728950e", s.product)
  end,
}

-- Zippy, earlier: seller, product, a purchase of order-9 and the buyer's payment; the
-- sandbox sends the buyer back with the signed notice and POSTs it to notify_url (a sink).
local function zippy_paid(t)
  local paykit = require "paykit"
  local gw = assert(paykit.zippy { consumer_key = ZIPPY.consumer_key, consumer_secret = ZIPPY.consumer_secret,
    notice_keys = ZIPPY.notice_keys, base_url = t.sandbox .. "/zippy" })
  local seller, product = "shop-" .. core.random_hex(4), core.uuid4()
  assert(gw:create_seller { uuid = seller, status = "ACTIVE", name = "My shop", email = "me@shop.example" })
  assert(gw:create_product { uuid = product, name = "Sword", external_id = "sword-1", seller_id = seller })
  local name = sink_name("zippy")
  local r = assert(gw:purchase { product_id = product, reference = "order-9", amount = "0.99", currency = "EUR",
    pay_method = "CARD", carrier = "TMOBILE", region = 310, return_url = "https://shop.example/return/zippy",
    notify_url = t.sandbox .. "/_sink/" .. name })
  local paid = post_json(t.sandbox .. "/zippy/_sandbox/pay", { token = r.keep.token, outcome = "success" })
  local note = sink(t.sandbox, name)[1]
  return { sandbox = t.sandbox, keep = r.keep, return_query = paid.Location:match("%?(.*)$"), notify_body = note.body }
end

local function zippy_globals(data, rec)
  local save_order, load_order = orders(rec)
  save_order(data.keep.ext_transaction_id, data.keep)
  return { zippy = assert(require("paykit").zippy { consumer_key = ZIPPY.consumer_key, consumer_secret = ZIPPY.consumer_secret,
                                                    notice_keys = ZIPPY.notice_keys, base_url = data.sandbox .. "/zippy" }),
           load_order = load_order }
end

M.zippy_return = {
  setup = zippy_paid,
  globals = zippy_globals,
  request = function(data) return { path = "/return/zippy", query = data.return_query } end,
  summary = function(l, rec, _, data)
    return { done = result(l.done), err = errinfo(l.err), loaded = rec.loaded, id = data.keep.ext_transaction_id }
  end,
  check = function(s)
    assert.is_nil(s.err)
    assert.same({ s.id }, s.loaded)
    assert.equal("paid", s.done.status); assert.equal(s.id, s.done.reference)
    assert.equal("0.99", s.done.amount); assert.equal("EUR", s.done.currency)
  end,
}

M.zippy_notify = {
  setup = zippy_paid,
  globals = zippy_globals,
  request = function(data)
    return { method = "POST", path = "/notify/zippy", body = data.notify_body,
             headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
  end,
  summary = function(l, _, _, data) return { n = result(l.n), reply = reply(l.reply), id = data.keep.ext_transaction_id } end,
  check = function(s)
    assert.equal("paid", s.n.status); assert.equal(s.id, s.n.reference); assert.is_false(s.n.duplicate)
    assert.equal(200, s.reply.status)
  end,
}

-- The journal: a purchase through the journal-wrapped gateway; the grant hook is the shop's.
M.journal = {
  globals = function(_, rec)
    rec.granted = {}
    return { give_item = function(reference, token) rec.granted[#rec.granted + 1] = reference .. " " .. token; return true end }
  end,
  summary = function(l, rec)
    local record = assert(l.j, "the block has no local j"):get("moka", "order-7")
    return { state = record and record.state, amount = record and record.amount, granted = rec.granted }
  end,
  check = function(s)
    -- written before sending, and the 3D answer stored: the buyer is on the bank's page
    assert.equal("redirect", s.state); assert.equal("27.50", s.amount)
    assert.same({}, s.granted)
  end,
}

-- Per-call transport options: `gw` is a Moka instance on the sandbox; the call's correlation
-- id reaches its result (or error).
M.http_with = {
  setup = function(t) return { sandbox = t.sandbox } end,
  globals = function(data)
    return { gw = assert(require("paykit").moka { dealer_code = MOKA.dealer_code, username = MOKA.username,
                                                  password = MOKA.password, base_url = data.sandbox .. "/moka" }) }
  end,
  summary = function(l)
    local got = l.r or l.err
    return { correlation_id = got and got.correlation_id, status = l.r and l.r.status, err = errinfo(l.err) }
  end,
  check = function(s)
    assert.equal("order-17", s.correlation_id)
  end,
}

-- paykit.loop from a host loop: `gw` is a Moka instance on the sandbox. The tick starts a 3D
-- purchase and keeps ticking until its callback ran; luv and cqueues ask a status.
local function loop_globals(data, rec)
  local g
  g = {
    paykit = require "paykit", running = true,
    gw = assert(require("paykit").moka { dealer_code = MOKA.dealer_code, username = MOKA.username,
                                         password = MOKA.password, base_url = data.sandbox .. "/moka" }),
    ref = "order-" .. core.random_hex(4), ip = "203.0.113.7", back = "https://shop.example/return/moka",
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "09", exp_year = "2031", cvc = "123" },
    on_purchase = function(r) rec.status = r.status; rec.redirect = r.redirect_url end,
    on_error = function(e) rec.err = e.code end,
    simulate_world = function()
      rec.ticks = (rec.ticks or 0) + 1
      if rec.status or rec.err or rec.ticks > 3000 then g.running = false end
    end,
    sleep_until_next_tick = function() core.sleep(0.002) end,
  }
  return g
end
local function loop_answer(_, _, env)
  local a = rawget(env, "answer")
  return { kind = type(a) == "table" and (a.kind or a.status) or nil, provider = type(a) == "table" and a.provider or nil }
end
M.loop_tick = {
  setup = function(t) return { sandbox = t.sandbox } end,
  globals = loop_globals,
  summary = function(_, rec) return { status = rec.status, err = rec.err, ticks = rec.ticks, redirect = rec.redirect } end,
  check = function(s)
    assert.equal("redirect", s.status, tostring(s.err))
    assert.truthy(s.redirect:find("^http"))
    assert.truthy(s.ticks >= 1)
  end,
}
M.loop_luv = {
  setup = function(t) return { sandbox = t.sandbox } end,
  globals = loop_globals,
  summary = loop_answer,
  check = function(s) assert.is_not_nil(s.kind, "the callback ran with a result or an error") end,
}
M.loop_cqueues = M.loop_luv

-- The sandbox's fault modes from Lua: `moka` is the shop's instance, `payment` a non-3D payment.
M.sandbox_faults = {
  setup = function(t) return { sandbox = t.sandbox } end,
  globals = function(data)
    return {
      moka = assert(require("paykit").moka { dealer_code = MOKA.dealer_code, username = MOKA.username,
                                             password = MOKA.password, base_url = data.sandbox .. "/moka" }),
      payment = { reference = "order-" .. core.random_hex(4), amount = "27.50", currency = "TL", client_ip = "203.0.113.7",
                  card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "09", exp_year = "2031", cvc = "123" } },
    }
  end,
  summary = function(l, _, _, data)
    local armed = require("paykit.sandbox").faults { url = data.sandbox }
    return { r = result(l.r), err = errinfo(l.err), count = l.log and l.log.count, armed = armed and #armed }
  end,
  check = function(s)
    assert.is_nil(s.r)
    assert.same({ kind = "transport", code = "recv", retryable = false }, s.err)
    assert.equal(1, s.count)
    assert.equal(0, s.armed)
  end,
}

---------------------------------------------------------------------------- the runner

-- Runs README's block `code` (its first line is README.md:line) with fixture `name`'s globals;
-- returns {summary = fixture.summary(locals, rec, env, data)} or {error = message}.
function M.run(name, code, line, data)
  local fx = M[name]
  if not fx then return { error = "no fixture " .. tostring(name) } end
  local rec = {}
  local g, lazy = {}, {}
  if fx.globals then
    local ok, a, b = pcall(fx.globals, data, rec)
    if not ok then return { error = "fixture " .. name .. ": " .. tostring(a) } end
    g, lazy = a or {}, b or {}
  end
  local env = setmetatable({}, { __index = function(t, k)
    if g[k] ~= nil then return g[k] end
    if lazy[k] then local v = lazy[k](); rawset(t, k, v); return v end
    return _G[k]
  end })
  local src = string.rep("\n", line - 1) .. code   -- so that errors say README.md:<line>
  local chunk, err
  if setfenv then
    chunk, err = loadstring(src, "@README.md")
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(src, "@README.md", "t", env)
  end
  if not chunk then return { error = err } end
  -- the block's top-level locals, read as the chunk returns
  local locals = {}
  local oh, om, oc = debug.gethook()
  debug.sethook(function()
    local info = debug.getinfo(2, "f")
    if info and info.func == chunk then
      local i = 1
      while true do
        local n, v = debug.getlocal(2, i)
        if not n then break end
        if n:sub(1, 1) ~= "(" then locals[n] = v end
        i = i + 1
      end
    end
  end, "r")
  local ok, why = xpcall(chunk, debug.traceback)
  debug.sethook(oh, om, oc)
  if not ok then return { error = why } end
  local sok, summary = pcall(fx.summary, locals, rec, env, data)
  if not sok then return { error = "fixture " .. name .. " summary: " .. tostring(summary) } end
  return { summary = summary }
end

-- The spec's nginx content handler: runs the block sent in X-Doctest-Code with the fixture
-- X-Doctest-Fixture (data: X-Doctest-Data) in this request, and answers the summary as JSON.
function M.serve()
  local h = ngx.req.get_headers()
  local code = core.b64_decode(h["X-Doctest-Code"] or "")
  local data = cjson.decode(core.b64_decode(h["X-Doctest-Data"] or "") or "") or {}
  local r = M.run(h["X-Doctest-Fixture"], code or "", tonumber(h["X-Doctest-Line"]) or 1, data)
  local out = { summary = r.summary, doctest_error = r.error and tostring(r.error) }
  local body, err = cjson.encode(out)
  if not body then body = cjson.encode { doctest_error = "summary is not JSON: " .. tostring(err) } end
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  ngx.print(body)
end

return M
