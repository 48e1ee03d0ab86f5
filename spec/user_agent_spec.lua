-- Every request paykit sends says `User-Agent: paykit/<version>`, through wire and libcurl
-- (plain Lua) and through cosockets (inside nginx), from paykit.http and from a provider; a caller's
-- user_agent replaces it. A real nginx (port 18845) records the header it received.
local nginx = require "spec.support.nginx"
local paykit = require "paykit"
local http = require "paykit.http"

local PORT = 18845
local CONF = [[
  lua_shared_dict seen 1m;
  server {
    listen 127.0.0.1:${PORT};
    # records the User-Agent of every request under its path
    location /record/ { content_by_lua_block {
      ngx.shared.seen:set(ngx.var.uri, ngx.var.http_user_agent or "(none)")
      ngx.header["Content-Type"] = "application/json"
      ngx.say('{"ResultCode": "Success", "Data": null}')
    } }
    location = /seen { content_by_lua_block { ngx.print(ngx.shared.seen:get(ngx.var.arg_path) or "") } }
    # a content handler making the same calls over cosockets
    location = /from-nginx { content_by_lua_block {
      local t = require("paykit.http").new { retry = false }
      local res, err = t:request { url = "http://127.0.0.1:${PORT}/record/cosocket" }
      local moka = require("paykit").moka { dealer_code = "1", username = "u", password = "p",
        base_url = "http://127.0.0.1:${PORT}/record/moka-cosocket", retry = false }
      moka:status("order-1")
      ngx.say(res and res.status or tostring(err))
    } }
  }
]]

describe("User-Agent", function()
  local srv
  local want = "paykit/" .. paykit.VERSION

  local function seen(path)
    local res = assert(http.new { retry = false, user_agent = "spec-reader" }:request {
      url = "http://127.0.0.1:" .. PORT .. "/seen?path=" .. path })
    return res.body
  end

  lazy_setup(function() srv = nginx.start("user-agent", CONF, { PORT = PORT }) end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("is paykit/<version>, the library's version", function()
    assert.are.equal("paykit/0.1.0", want)
    assert.are.equal(require("paykit.core")._VERSION, paykit.VERSION)
  end)

  -- the two C transports outside nginx: wire (the default) and libcurl
  for _, kind in ipairs { "wire", "curl" } do
    local label = kind == "curl" and "libcurl" or "wire"
    it("is sent by paykit.http through " .. label, function()
      local t = http.new { retry = false, transport = kind }
      local res = assert(t:request { url = "http://127.0.0.1:" .. PORT .. "/record/" .. kind })
      assert.are.equal(200, res.status)
      assert.are.equal(want, seen("/record/" .. kind))
      assert.is_truthy(kind == "wire" and t.wire or t.client) -- that client served it
    end)

    it("is sent by a provider through " .. label, function()
      local moka = paykit.moka { dealer_code = "1", username = "u", password = "p", transport = kind,
        base_url = "http://127.0.0.1:" .. PORT .. "/record/moka-" .. kind, retry = false }
      moka:status("order-1") -- the answer is not a payment: only the request matters here
      assert.are.equal(want, seen("/record/moka-" .. kind .. "/PaymentDealer/GetDealerPaymentTrxDetailList"))
    end)

    it("can be replaced with user_agent through " .. label, function()
      assert(http.new { retry = false, transport = kind, user_agent = "shop/2" }:request {
        url = "http://127.0.0.1:" .. PORT .. "/record/own-" .. kind })
      assert.are.equal("shop/2", seen("/record/own-" .. kind))
    end)
  end

  it("is sent through cosockets from a content handler, by paykit.http and by a provider", function()
    local res = assert(http.new { retry = false }:request { url = "http://127.0.0.1:" .. PORT .. "/from-nginx" })
    assert.are.equal("200\n", res.body, srv:error_log())
    assert.are.equal(want, seen("/record/cosocket"))
    assert.are.equal(want, seen("/record/moka-cosocket/PaymentDealer/GetDealerPaymentTrxDetailList"))
  end)
end)
