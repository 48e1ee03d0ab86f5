-- The Zippy client inside nginx (LuaJIT, the cosocket transport): a "shop" nginx whose
-- handlers call the sandbox. /badinput runs every case of spec/support/zippy_cases.lua there (the
-- sandbox must count no request); /trip runs a purchase with the reference server's "?"
-- return, forged returns and callbacks, the merged seller update and a plain-text 409.
local cjson = require "cjson.safe"
local nginx = require "spec.support.nginx"
local sb = require "spec.support.sandbox"
local zs = require "spec.support.zippy"

local PORT = 18797

local SHOP = [[
  lua_socket_log_errors off;
  server {
    listen 127.0.0.1:${PORT};
    location = /badinput {
      content_by_lua_block {
        local cjson = require "cjson.safe"
        local paykit = require "paykit"
        local sandbox = require "paykit.sandbox.zippy"
        local cases = require "spec.support.zippy_cases"
        local hooked = 0
        local z = paykit.zippy { consumer_key = sandbox.CONSUMER_KEY, consumer_secret = sandbox.CONSUMER_SECRET,
          base_url = ngx.var.arg_base, notice_keys = sandbox.NOTICE_KEYS, retry = false,
          hooks = { before = function() hooked = hooked + 1 end } }
        local function reached() return hooked end
        local api, api_failures = cases.check(z, cases.API, reached)
        local notices, notice_failures = cases.check(z, cases.NOTICES, reached)
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode { cosocket = require("paykit.http").in_cosocket_phase(),
          api = api, api_total = #cases.API, notices = notices, notices_total = #cases.NOTICES,
          failures = #api_failures + #notice_failures > 0 and { api_failures, notice_failures } or false,
          hooked = hooked })
      }
    }
    location = /trip {
      content_by_lua_block {
        local cjson = require "cjson.safe"
        local core = require "paykit.core"
        local paykit = require "paykit"
        local sandbox = require "paykit.sandbox.zippy"
        local base, sink = ngx.var.arg_base, ngx.var.arg_sink
        local z = paykit.zippy { consumer_key = sandbox.CONSUMER_KEY, consumer_secret = sandbox.CONSUMER_SECRET,
          base_url = base, notice_keys = sandbox.NOTICE_KEYS, retry = false }
        local out = { cosocket = require("paykit.http").in_cosocket_phase() }
        local function code(_, err) return err and err.code or "accepted" end
        local function try(name, f)
          local ok, e = pcall(f)
          if not ok then out[name .. "_raised"] = tostring(e) end
        end
        try("setup", function()
          local seller, product = core.uuid4(), core.uuid4()
          out.seller = assert(z:create_seller { uuid = seller, status = "ACTIVE", name = "Nginx shop", email = "n@example.org" }).uuid
          assert(z:create_product { uuid = product, name = "Helm", external_id = "helm-" .. core.random_hex(4), seller_id = seller })
          -- the merged update keeps status, so the seller can still sell
          out.update_name = assert(z:update_seller(seller, { name = "Renamed" })).name
          out.update_status = assert(z:get_seller(seller)).status
          out.update_other = code(z:update_seller(seller, { uuid = core.uuid4() }))
          -- a duplicate external_id: the plain-text 409 keeps its text
          local _, err = z:create_product { uuid = core.uuid4(), name = "Helm", external_id = "dup", seller_id = seller }
          assert(not err, err and tostring(err))
          _, err = z:create_product { uuid = core.uuid4(), name = "Helm", external_id = "dup", seller_id = seller }
          out.plain_409 = err and err.message
          -- a purchase whose return_url has a query: the reference server's "?" redirect
          local function buy(ref, amount)
            return assert(z:purchase { product_id = product, amount = amount or "0.99", currency = "EUR",
              pay_method = "CARD", carrier = "TMOBILE", region = 310, reference = ref,
              return_url = sink .. "?order=7", notify_url = sink })
          end
          local a, b = buy("nginx-a-" .. core.random_hex(4)), buy("nginx-b-" .. core.random_hex(4))
          local paid = assert(z:call("POST", "/_sandbox/pay", { body = { token = a.keep.token }, op = "pay" }))
          local query = paid.Location:match("%?(.*)$")
          out.query_shape = query:match("^order=7%?ext_transaction_id=") ~= nil
          local done, err2 = z:complete(query, a.keep)
          out.complete_a = done and done.status or tostring(err2)
          out.complete_a_amount = done and done.amount
          out.replay_on_b = code(z:complete(query, b.keep))
          out.tampered = code(z:complete((query:gsub("ext_transaction_id=nginx%-a", "ext_transaction_id=nginx-b")), b.keep))
          out.unsigned = code(z:complete("ext_transaction_id=" .. b.keep.ext_transaction_id, b.keep))
          out.zero = code(z:purchase { product_id = product, amount = "0.00", currency = "EUR", pay_method = "CARD",
            carrier = "TMOBILE", region = 310, reference = "zero", return_url = sink, notify_url = sink })
          -- an id sent as it is (reference_nonce = false) cannot start a second transaction at another price
          local plain = paykit.zippy { consumer_key = sandbox.CONSUMER_KEY, consumer_secret = sandbox.CONSUMER_SECRET,
            base_url = base, notice_keys = sandbox.NOTICE_KEYS, retry = false, reference_nonce = false }
          local function plain_buy(ref, amount)
            return plain:purchase { product_id = product, amount = amount, currency = "EUR", pay_method = "CARD",
              carrier = "TMOBILE", region = 310, reference = ref, return_url = sink, notify_url = sink }
          end
          local ref = "nginx-plain-" .. core.random_hex(4)
          assert(plain_buy(ref, "0.99"))
          out.reused = code(plain_buy(ref, "5.00"))
          out.nonce_differs = buy(ref).keep.ext_transaction_id ~= buy(ref).keep.ext_transaction_id
          local body = "signed_notice=" .. core.pct_encode(paid.signed_notice)
          local n1 = z:notification { method = "POST", body = body }
          local n2 = z:notification { method = "POST", body = body }
          out.callback = n1 and n1.status
          out.callback_reference_is_a = n1 and n1.reference == a.keep.ext_transaction_id
          out.callback_duplicate = n2 and n2.duplicate
          local forged = paid.signed_notice:gsub("^ext_transaction_id=[^&]*", "ext_transaction_id=" .. core.pct_encode(b.keep.ext_transaction_id))
          local _, ferr, reply = z:notification { method = "POST", body = "signed_notice=" .. core.pct_encode(forged) }
          out.callback_forged = ferr and ferr.code
          out.callback_forged_reply = reply and reply.status
          -- 20 concurrent deliveries of one new notice (light threads, each yielding first):
          -- exactly one is the first (notification() does not yield between check and record)
          local c = buy("nginx-c-" .. core.random_hex(4))
          local paid_c = assert(z:call("POST", "/_sandbox/pay", { body = { token = c.keep.token }, op = "pay" }))
          local body_c = "signed_notice=" .. core.pct_encode(paid_c.signed_notice)
          local threads = {}
          for i = 1, 20 do
            threads[i] = ngx.thread.spawn(function()
              ngx.sleep(0)
              local r = z:notification { method = "POST", body = body_c }
              return r and r.status == "paid" and r.duplicate
            end)
          end
          out.concurrent_first, out.concurrent_paid = 0, 0
          for i = 1, 20 do
            local ok, dup = ngx.thread.wait(threads[i])
            if ok and dup ~= nil then
              out.concurrent_paid = out.concurrent_paid + 1
              if dup == false then out.concurrent_first = out.concurrent_first + 1 end
            end
          end
        end)
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode(out))
      }
    }
  }
]]

describe("zippy inside nginx (cosocket)", function()
  local srv, base

  local function get(path)
    local res = sb.request("GET", "http://127.0.0.1:" .. PORT .. path)
    assert.are.equal(200, res.status, res.body)
    return assert(cjson.decode(res.body))
  end

  local function server_count()
    return sb.request("GET", base .. "/_sandbox/requests").json.requests
  end

  setup(function()
    sb.start()
    base = zs.base()
    srv = nginx.start("zippy-shop", SHOP, { PORT = PORT, WORKERS = 1 })
  end)
  teardown(function()
    if srv then srv:stop() end
    sb.stop()
  end)

  it("refuses every bad input before the network there too", function()
    local before = server_count()
    local r = get("/badinput?base=" .. base)
    assert.is_true(r.cosocket)
    assert.are.same(false, r.failures)
    assert.are.equal(r.api_total, r.api)
    assert.are.equal(r.notices_total, r.notices)
    assert.are.equal(0, r.hooked)
    assert.are.equal(before, server_count())
    print(("\nzippy bad input inside nginx: %d of %d API calls, %d of %d notices refused"):format(
      r.api, r.api_total, r.notices, r.notices_total))
  end)

  it("pays with the reference server's '?' return and refuses the forgeries", function()
    local r = get("/trip?base=" .. base .. "&sink=" .. sb.url() .. "/_sink/zippy-nginx")
    assert.is_true(r.cosocket)
    for k, v in pairs(r) do assert.is_nil(k:find("_raised$"), k .. ": " .. tostring(v)) end
    assert.are.equal("Renamed", r.update_name)
    assert.are.equal("ACTIVE", r.update_status)
    assert.are.equal("mismatch", r.update_other)
    assert.truthy(r.plain_409 and r.plain_409:find("external_id must be unique per seller", 1, true), r.plain_409)
    assert.is_true(r.query_shape)
    assert.are.equal("paid", r.complete_a)
    assert.are.equal("0.99", r.complete_a_amount)
    assert.are.equal("wrong_transaction", r.replay_on_b)
    assert.are.equal("bad_signature", r.tampered)
    assert.are.equal("unsigned", r.unsigned)
    assert.are.equal("not_positive", r.zero)
    assert.are.equal("reused", r.reused)
    assert.is_true(r.nonce_differs)
    assert.are.equal("paid", r.callback)
    assert.is_true(r.callback_reference_is_a)
    assert.is_true(r.callback_duplicate)
    assert.are.equal("bad_signature", r.callback_forged)
    assert.are.equal(400, r.callback_forged_reply)
    assert.are.equal(20, r.concurrent_paid)
    assert.are.equal(1, r.concurrent_first)
  end)
end)
