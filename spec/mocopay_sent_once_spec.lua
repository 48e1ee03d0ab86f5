-- Which MoCoPay calls may be sent again (issue 11): initPayment opens a payment session each
-- time it arrives, so after a failure that may have reached MoCoPay it is not sent again (one
-- session, not three); verifyPayment only reads and is retried. A spec-local nginx counts what
-- it received: it reads each request and closes the connection without an answer (the
-- request reached it: "may have been sent"), or answers 503. Through libcurl (Lua 5.4,
-- LuaJIT) and through cosockets inside nginx.
local nginx = require "spec.support.nginx"
local paykit = require "paykit"
local cjson = require "cjson.safe"

local PORT = 18873
local base = "http://127.0.0.1:" .. PORT

local SERVER = [[
  lua_shared_dict counts 1m;
  server {
    listen 127.0.0.1:${PORT};
    location /drop/ { content_by_lua_block {
      ngx.shared.counts:incr(ngx.var.uri:match("/v1/payment/(%w+)") or "other", 1, 0)
      ngx.req.read_body()
      return ngx.exit(444) -- close, no answer
    } }
    location /e503/ { content_by_lua_block {
      ngx.shared.counts:incr(ngx.var.uri:match("/v1/payment/(%w+)") or "other", 1, 0)
      ngx.status = 503
      ngx.print('{"errorCode":"Unavailable"}')
    } }
    location = /count { content_by_lua_block {
      local d = ngx.shared.counts
      ngx.print(require("cjson").encode { initPayment = d:get("initPayment") or 0, verifyPayment = d:get("verifyPayment") or 0 })
    } }
    location = /reset { content_by_lua_block { ngx.shared.counts:flush_all(); ngx.print("ok") } }
    location = /inside { content_by_lua_block {
      local paykit = require "paykit"
      local gw = paykit.mocopay { api_key = "k", api_secret = "s", base_url = "http://127.0.0.1:${PORT}/" .. ngx.var.arg_mode,
                                  retry = { attempts = 3, base_delay = 0.01, max_delay = 0.02 } }
      local _, e1 = gw:purchase { pid = "12000" }
      local _, e2 = gw:status("518ec5708a8842dba19993f01ef863b5")
      ngx.print(require("cjson").encode { purchase = e1 and e1.code, purchase_retryable = e1 and e1.retryable,
                                          status = e2 and e2.code })
    } }
  }
]]

local srv, client

local function get(path)
  local res = assert(client:request { url = base .. path })
  return res.body
end

local function counts() return cjson.decode(get("/count")) end

local function gateway(mode, hooks)
  return paykit.mocopay { api_key = "k", api_secret = "s", base_url = base .. "/" .. mode, hooks = hooks,
                          retry = { attempts = 3, base_delay = 0.01, max_delay = 0.02 } }
end

describe("mocopay calls sent once or again", function()
  lazy_setup(function()
    srv = nginx.start("mocopay_sent_once_spec", SERVER, { PORT = PORT })
    client = require("paykit.http").new { retry = false, timeout = 30 }
  end)
  lazy_teardown(function()
    client:close()
    srv:stop()
  end)
  before_each(function() get("/reset") end)

  it("sends initPayment once when the connection drops after the request was read", function()
    local attempts = 0
    local gw = gateway("drop", { before = function() attempts = attempts + 1 end })
    local ok, err = gw:purchase { pid = "12000", reference = "order-once" }
    assert.is_nil(ok)
    assert.equal("transport", err.kind)
    assert.is_false(err.retryable)
    assert.matches("may have reached", err.message)
    assert.equal(1, attempts)
    assert.equal(1, counts().initPayment)
  end)

  it("does not send initPayment again after a 503", function()
    local ok, err = gateway("e503"):purchase { pid = "12000" }
    assert.is_nil(ok)
    assert.equal("server_error", err.code)
    assert.equal(1, counts().initPayment)
  end)

  it("retries verifyPayment, which only reads", function()
    local ok, err = gateway("drop"):status("518ec5708a8842dba19993f01ef863b5")
    assert.is_nil(ok)
    assert.equal("transport", err.kind)
    assert.equal(3, counts().verifyPayment)
    get("/reset")
    ok = gateway("e503"):status("518ec5708a8842dba19993f01ef863b5")
    assert.is_nil(ok)
    assert.equal(3, counts().verifyPayment)
  end)

  it("does the same over cosockets inside nginx", function()
    local out = cjson.decode(get("/inside?mode=drop"))
    assert.is_false(out.purchase_retryable)
    assert.same({ initPayment = 1, verifyPayment = 3 }, counts())
    get("/reset")
    out = cjson.decode(get("/inside?mode=e503"))
    assert.equal("server_error", out.purchase)
    assert.same({ initPayment = 1, verifyPayment = 3 }, counts())
  end)
end)
