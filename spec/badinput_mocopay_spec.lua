-- Bad input to every public MoCoPay call that can reach the network (purchase, init_payment,
-- verify_payment, status, complete, notification): each one is refused with an error naming
-- the field, and nothing is sent. The client points at a sandbox sink, which records every
-- request it receives: after all the cases it holds none (a valid call, sent last, shows
-- that the sink does count).
local sb = require "spec.support.sandbox"
local core = require "paykit.core"
local paykit = require "paykit"
local errors = require "paykit.errors"
local mocopay = require "paykit.providers.mocopay"

local SID = "518ec5708a8842dba19993f01ef863b5"
local KEEP = { request_id = "9bf849fd215542088fa5c98b99a185a2", reference_id = "order-1", pid = "12000" }
local RET = { sid = SID, sessionId = SID, requestId = KEEP.request_id, referenceId = "order-1", status = "PaymentComplete" }
local PATH = "/shop/mocopay/notify"

local function with(t, over)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  for k, v in pairs(over) do if v == false then r[k] = nil else r[k] = v end end
  return r
end
local function pid(over) return with({ pid = "12000" }, over) end
local function ret(over) return with(RET, over) end
local function q(map) -- a query string with the pairs in order
  local out = {}
  for i, kv in ipairs(map) do out[i] = core.pct_encode(kv[1]) .. "=" .. core.pct_encode(kv[2]) end
  return table.concat(out, "&")
end
local function signed(p) return mocopay.signed_query("sandbox-app", "sandbox-secret", PATH, p) end

-- {call, field, args...}: call is a method name of the instance; field the err.field expected.
local CASES = {
  -- purchase: the table itself
  { "purchase", "purchase", nil }, { "purchase", "purchase", "pid=12000" }, { "purchase", "purchase", 12000 },
  -- pid / product
  { "purchase", "pid", {} }, { "purchase", "pid", { reference = "r" } }, { "purchase", "pid", pid { pid = "" } },
  { "purchase", "pid", pid { pid = 12000 } }, { "purchase", "pid", pid { pid = true } }, { "purchase", "pid", pid { pid = {} } },
  { "purchase", "pid", pid { pid = string.rep("p", 65) } }, { "purchase", "pid", pid { pid = "a\nb" } },
  { "purchase", "pid", pid { pid = "a\0b" } }, { "purchase", "product", { product = "" } },
  { "purchase", "product", { product = 7 } },
  -- mcc / mnc
  { "purchase", "mcc", pid { mcc = "22" } }, { "purchase", "mcc", pid { mcc = "2281" } }, { "purchase", "mcc", pid { mcc = "22a" } },
  { "purchase", "mcc", pid { mcc = 228 } }, { "purchase", "mcc", pid { mcc = " 228" } }, { "purchase", "mcc", pid { mcc = "" } },
  { "purchase", "mnc", pid { mnc = "1" } }, { "purchase", "mnc", pid { mnc = "0001" } }, { "purchase", "mnc", pid { mnc = "0a" } },
  { "purchase", "mnc", pid { mnc = 1 } },
  -- country / lang
  { "purchase", "country", pid { country = "XX" } }, { "purchase", "country", pid { country = "hr" } },
  { "purchase", "country", pid { country = "HRV" } }, { "purchase", "country", pid { country = "UK" } },
  { "purchase", "country", pid { country = "" } }, { "purchase", "lang", pid { lang = "xx" } },
  { "purchase", "lang", pid { lang = "EN" } }, { "purchase", "lang", pid { lang = "eng" } }, { "purchase", "lang", pid { lang = "e" } },
  -- user_id
  { "purchase", "user_id", pid { user_id = "" } }, { "purchase", "user_id", pid { user_id = string.rep("u", 256) } },
  { "purchase", "user_id", pid { user_id = "a\0b" } }, { "purchase", "user_id", pid { user_id = 5 } },
  -- client_ip
  { "purchase", "client_ip", pid { client_ip = "999.999.999.999" } }, { "purchase", "client_ip", pid { client_ip = "cafe" } },
  { "purchase", "client_ip", pid { client_ip = "..." } }, { "purchase", "client_ip", pid { client_ip = "1.2.3" } },
  { "purchase", "client_ip", pid { client_ip = "1::2::3" } }, { "purchase", "client_ip", pid { client_ip = "::1%lo" } },
  { "purchase", "client_ip", pid { client_ip = "01.2.3.4" } }, { "purchase", "client_ip", pid { client_ip = " 1.2.3.4" } },
  { "purchase", "client_ip", pid { client_ip = "localhost" } }, { "purchase", "client_ip", pid { client_ip = "[::1]" } },
  -- phone
  { "purchase", "phone", pid { phone = "abc" } }, { "purchase", "phone", pid { phone = "+1" } },
  { "purchase", "phone", pid { phone = "++385911" } }, { "purchase", "phone", pid { phone = "385 91 123" } },
  { "purchase", "phone", pid { phone = string.rep("1", 22) } }, { "purchase", "phone", pid { phone = 385911234567 } },
  -- reference
  { "purchase", "reference", pid { reference = "" } }, { "purchase", "reference", pid { reference = string.rep("r", 256) } },
  { "purchase", "reference", pid { reference = "r\nx" } }, { "purchase", "reference", pid { reference = 42 } },
  { "purchase", "reference", pid { reference = string.rep("r", 10 * 1024 * 1024) } },
  -- URLs
  { "purchase", "return_url", pid { return_url = "back.html" } }, { "purchase", "return_url", pid { return_url = "ftp://x.example/a" } },
  { "purchase", "return_url", pid { return_url = "javascript:alert(1)" } },
  { "purchase", "return_url", pid { return_url = "http://user:pw@shop.example/" } },
  { "purchase", "return_url", pid { return_url = "https://" } }, { "purchase", "callback_url", pid { callback_url = "/back" } },
  { "purchase", "notify_url", pid { notify_url = "/n" } }, { "purchase", "notify_url", pid { notify_url = "http://shop.example:70000/" } },
  { "purchase", "notify_url", pid { notify_url = "https://x.example/\n" } },
  { "purchase", "image_url", pid { image_url = "mailto:a@b.c" } }, { "purchase", "image_url", pid { image_url = "http://[1::2::3]/" } },
  -- fields that do not exist or repeat another
  { "purchase", "colour", pid { colour = "red" } }, { "purchase", "amount", pid { amount = "1.99" } },
  { "purchase", "currency", pid { currency = "EUR" } }, { "purchase", "1", pid { [1] = "x" } },
  { "purchase", { "pid", "product" }, pid { product = "12000" } },
  { "purchase", { "return_url", "callback_url" }, pid { return_url = "https://a.example/", callback_url = "https://b.example/" } },
  -- init_payment (API names)
  { "init_payment", "params", nil }, { "init_payment", "params", "pid=1" }, { "init_payment", "pid", { mcc = "228" } },
  { "init_payment", "amount", { pid = "1", amount = "10" } }, { "init_payment", "callbackUrl", { pid = "1", callbackUrl = "x" } },
  { "init_payment", "signature", { pid = "1", signature = "app1:abc" } }, { "init_payment", "clientIp", { pid = "1", clientIp = "1.2.3.256" } },
  -- verify_payment / status
  { "verify_payment", "sessionId", nil }, { "verify_payment", "sessionId", {} }, { "verify_payment", "sessionId", "" },
  { "verify_payment", "sessionId", 42 }, { "verify_payment", "sessionId", true },
  { "verify_payment", "sessionId", { sessionId = "a\nb" } }, { "verify_payment", "sessionId", { sessionId = 5 } },
  { "verify_payment", "sessionId", { sessionId = string.rep("s", 256) } }, { "verify_payment", "sessionId", "a\0b" },
  { "verify_payment", "transactionId", { transactionId = "" } }, { "verify_payment", "userId", { userId = "" } },
  { "verify_payment", "userId", { user_id = {} } }, { "verify_payment", "order", { order = "x" } },
  { "verify_payment", "session_id", { session_id = "a", sessionId = "b" } },
  { "verify_payment", "userId", { sessionId = "a", userId = "b" } },
  { "verify_payment", "transactionId", { session_id = "a", transaction_id = "b" } },
  { "status", "sessionId", "" }, { "status", "sessionId", { sessionId = "x\r" } },
  { "status", "keep", SID, "keep" }, { "status", "keep", SID, { request_id = 1, reference_id = "r" } },
  { "status", "keep", SID, { request_id = "x" } },
  { "status", "sessionId", SID, with(KEEP, { session_id = "bound-elsewhere" }) },
  { "status", "sessionId", { session_id = SID }, with(KEEP, { session_id = "bound-elsewhere" }) },
  { "status", "keep", SID, { request_id = "x", reference_id = "r", pid = 5 } },
  -- complete: the return's parameters and the keep
  { "complete", "params", 42, KEEP }, { "complete", "params", "sid=%zz", KEEP }, { "complete", "keep", RET, nil },
  { "complete", "keep", RET, {} }, { "complete", "keep", RET, { request_id = "x" } },
  { "complete", "keep", RET, { request_id = "x", reference_id = "r", session_id = 5 } },
  { "complete", "requestId", ret { requestId = false }, KEEP }, { "complete", "sid", ret { sid = false }, KEEP },
  { "complete", "sessionId", ret { sessionId = false }, KEEP }, { "complete", "referenceId", ret { referenceId = false }, KEEP },
  { "complete", "status", ret { status = false }, KEEP }, { "complete", "status", ret { status = "" }, KEEP },
  { "complete", "sessionId", ret { sessionId = { SID, "other" } }, KEEP },
  { "complete", "sessionId", q { { "sid", SID }, { "sessionId", SID }, { "sessionId", SID }, { "requestId", KEEP.request_id },
                                 { "referenceId", "order-1" }, { "status", "PaymentComplete" } }, KEEP },
  { "complete", "sessionId", ret { SessionID = SID }, KEEP }, { "complete", "sid", ret { sid = "a\nb", sessionId = "a\nb" }, KEEP },
  { "complete", "sid", ret { sid = string.rep("s", 256), sessionId = string.rep("s", 256) }, KEEP },
  { "complete", "requestId", ret { requestId = "0" .. KEEP.request_id:sub(2) }, KEEP },
  { "complete", "referenceId", ret { referenceId = "order-2" }, KEEP }, { "complete", "sid", ret { sid = "other" }, KEEP },
  { "complete", "sessionId", RET, with(KEEP, { session_id = "bound-elsewhere" }) },
  { "complete", "requestId", ret { requestId = 5 }, KEEP }, { "complete", "sid", ret { sid = true }, KEEP },
  { "complete", "status", ret { status = { "PaymentComplete", "PaymentComplete" } }, KEEP },
  -- notification
  -- a raw string is the notification's parameters (ISSUE9: every provider decodes one): one
  -- naming no payment is refused like the same query in a table
  { "notification", "req", nil }, { "notification", "sessionId", "status=Authorized" },
  { "notification", "query", { path = PATH, query = "sessionId=%zz" } },
  { "notification", "sessionId", { path = PATH, query = "status=Authorized" } },
  { "notification", "sessionId", { path = PATH, query = "sessionId=&status=Authorized" } },
  { "notification", "sessionId", { path = PATH, query = "sessionId=a%00b" } },
  { "notification", "sessionId", { path = PATH, query = "sessionId=" .. string.rep("s", 256) } },
  { "notification", "transactionId", { path = PATH, query = "transactionId=a%0Ab" } },
  { "notification", "referenceId", { path = PATH, query = "sessionId=a&referenceId=" .. string.rep("r", 256) } },
  { "notification", "referenceId", { path = PATH, query = "sessionId=a&referenceId=r%0Dx" } },
  { "notification", "signature", { path = PATH, query = "sessionId=a&signature=nocolon" } },
  { "notification", "signature", { path = PATH, query = "sessionId=a&signature=sandbox-app%3A" } },
  { "notification", "signature", { path = PATH, query = signed { sessionId = "a", status = "Authorized" }:gsub("Authorized", "Cancelled") } },
  { "notification", "signature", { path = "/elsewhere", query = signed { sessionId = "a", status = "Authorized" } } },
  { "notification", "signature", { path = PATH, query = mocopay.signed_query("intruder", "x", PATH, { sessionId = "a" }) } },
  { "notification", "notify_path", { query = signed { sessionId = "a" } } },
  { "notification", "sessionId", { path = PATH, query = signed { status = "Authorized" } } },
  { "notification", "opts", { path = PATH, query = "sessionId=" .. SID }, "keep" },
  { "notification", "opts", { path = PATH, query = "sessionId=" .. SID }, { keep = KEEP } },
}

describe("mocopay bad input", function()
  local base, n
  lazy_setup(function()
    base = sb.start()
    n = core.random_hex(6)
  end)
  lazy_teardown(function() sb.stop() end)

  local function gateway(opts)
    local o = { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/_sink/bad-" .. n, retry = false }
    for k, v in pairs(opts or {}) do o[k] = v end
    return paykit.mocopay(o)
  end

  it("refuses each case before the network, naming the field", function()
    local attempts = 0
    local gw = gateway { hooks = { before = function() attempts = attempts + 1 end } }
    local strict = gateway { require_signature = true }
    local refused, wrong = 0, {}
    for i, c in ipairs(CASES) do
      local before = attempts
      local ok, res, err = pcall(gw[c[1]], gw, c[3], c[4])
      if not ok then
        wrong[#wrong + 1] = i .. " raised: " .. tostring(res)
      elseif res ~= nil then
        wrong[#wrong + 1] = i .. " " .. c[1] .. ": accepted"
      elseif not errors.is(err) then
        wrong[#wrong + 1] = i .. " " .. c[1] .. ": not a paykit error: " .. tostring(err)
      elseif not (err.field == c[2] or (type(c[2]) == "table" and (err.field == c[2][1] or err.field == c[2][2])))
          or attempts ~= before then
        wrong[#wrong + 1] = string.format("%d %s: field %s (want %s), sent %d: %s", i, c[1], tostring(err.field),
          tostring(c[2]), attempts - before, tostring(err))
      elseif err.kind ~= "validation" and err.kind ~= "signature" and err.kind ~= "config" then
        wrong[#wrong + 1] = i .. " " .. c[1] .. ": kind " .. tostring(err.kind)
      else
        refused = refused + 1
      end
    end
    -- require_signature: an unsigned notification
    local ok, err = strict:notification { path = PATH, query = "sessionId=" .. SID .. "&status=Authorized" }
    if ok == nil and err.field == "signature" and err.code == "unsigned" then refused = refused + 1
    else wrong[#wrong + 1] = "unsigned: " .. tostring(err) end
    local total = #CASES + 1
    io.stderr:write(string.format("\n[badinput mocopay] refused %d of %d\n", refused, total))
    assert.same({}, wrong)
    assert.equal(total, refused)
    assert.truthy(total >= 90)
    -- the sink received nothing; a valid call is counted (the sink answers "OK", not JSON)
    assert.equal(0, #sb.sink_log("bad-" .. n))
    local _, e = gw:status(SID)
    assert.equal("invalid_response", e.code)
    assert.equal(1, #sb.sink_log("bad-" .. n, 1))
  end)

  it("leaves no state behind: a refused notification is not remembered", function()
    local gw = gateway()
    local before = gw.seen:size()
    for _, c in ipairs(CASES) do
      if c[1] == "notification" then gw:notification(c[3]) end
    end
    assert.equal(before, gw.seen:size())
  end)
end)
