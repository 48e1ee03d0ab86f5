-- Request ids and correlation ids, against a real nginx (port 18877): the provider's id of an
-- answer (a header, or a JSON member) lands on the transport's response and on the result or
-- error built from it; the correlation id paykit sends (generated per call, or given) is on
-- both too. Through libcurl (plain Lua) and through cosockets (a content handler).
local nginx = require "spec.support.nginx"
local http = require "paykit.http"
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local cjson = require "cjson"

local PORT = 18877
local CONF = [[
  server {
    listen 127.0.0.1:${PORT};
    # answers with a request id of its own and says which correlation ids it received
    location = /answer { content_by_lua_block {
      local h = ngx.req.get_headers()
      ngx.status = tonumber(ngx.var.arg_status or 200)
      ngx.header["X-Request-Id"] = "srv-" .. ngx.var.request_id
      ngx.header["X-Trace"] = "trace-1"
      ngx.header["Content-Type"] = "application/json"
      ngx.say(require("cjson").encode { correlation = h["x-correlation-id"] or false,
        request_id_header = h["x-request-id"] or false, ResultCode = "Success" })
    } }
    location = /json-id { content_by_lua_block {
      ngx.header["Content-Type"] = "application/json"
      ngx.say('{"requestId":"9bf849fd215542088fa5c98b99a185a2","redirectUrl":"http://x/"}')
    } }
    location = /slow { content_by_lua_block { ngx.sleep(2); ngx.say("late") } }
    location = /from-nginx { content_by_lua_block {
      local t = require("paykit.http").new { retry = false }
      local res, err = t:request { url = "http://127.0.0.1:${PORT}/answer" }
      local seen = res and require("cjson").decode(res.body)
      ngx.say(require("cjson").encode { request_id = res and res.request_id,
        correlation_id = res and res.correlation_id, received = seen and seen.correlation,
        err = err and tostring(err) })
    } }
  }
]]
local BASE = "http://127.0.0.1:" .. PORT
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

describe("request and correlation ids", function()
  local srv
  lazy_setup(function() srv = nginx.start("request-id", CONF, { PORT = PORT }) end)
  lazy_teardown(function() if srv then srv:stop() end end)
  before_each(function() errors.take_ids() end)

  describe("on the transport's response", function()
    it("carry the provider's X-Request-Id and the generated correlation id it received", function()
      local res = assert(http.new { retry = false }:request { url = BASE .. "/answer" })
      local seen = cjson.decode(res.body)
      assert.is_truthy(res.request_id:find("^srv%-%x+$"))
      assert.is_truthy(res.correlation_id:find(UUID))
      assert.are.equal(res.correlation_id, seen.correlation)
    end)

    it("generate a new correlation id per call", function()
      local t = http.new { retry = false }
      local a = assert(t:request { url = BASE .. "/answer" })
      local b = assert(t:request { url = BASE .. "/answer" })
      assert.are_not.equal(a.correlation_id, b.correlation_id)
      assert.are_not.equal(a.request_id, b.request_id)
    end)

    it("send the caller's correlation id, given per call or with http.with", function()
      local t = http.new { retry = false }
      local res = assert(t:request { url = BASE .. "/answer", correlation_id = "order-42" })
      assert.are.equal("order-42", cjson.decode(res.body).correlation)
      assert.are.equal("order-42", res.correlation_id)
      res = assert(http.with({ correlation_id = "order-43" }, t.request, t, { url = BASE .. "/answer" }))
      assert.are.equal("order-43", cjson.decode(res.body).correlation)
    end)

    it("refuse a correlation id that cannot go in a header, before sending", function()
      local t = http.new { retry = false }
      local none, err = t:request { url = BASE .. "/answer", correlation_id = "a\r\nX: y" }
      assert.is_nil(none)
      assert.are.equal("validation", err.kind)
      assert.are.equal("correlation_id", err.field)
    end)

    it("use the configured header names", function()
      local t = http.new { retry = false, correlation_header = "X-Request-Id", request_id_headers = { "X-Trace" } }
      local res = assert(t:request { url = BASE .. "/answer" })
      local seen = cjson.decode(res.body)
      assert.are.equal("trace-1", res.request_id)
      assert.are.equal(res.correlation_id, seen.request_id_header)
      assert.is_false(seen.correlation)
    end)

    it("send none with correlation_header = false, and read none with request_id_headers = false", function()
      local t = http.new { retry = false, correlation_header = false, request_id_headers = false }
      local res = assert(t:request { url = BASE .. "/answer" })
      assert.is_false(cjson.decode(res.body).correlation)
      assert.is_nil(res.correlation_id)
      assert.is_nil(res.request_id)
    end)

    it("take the request id from a JSON member when request_id_field names one", function()
      local res = assert(http.new { retry = false, request_id_field = "requestId" }:request { url = BASE .. "/json-id" })
      assert.are.equal("9bf849fd215542088fa5c98b99a185a2", res.request_id)
      res = assert(http.new { retry = false }:request { url = BASE .. "/json-id" })
      assert.is_nil(res.request_id)
    end)

    it("are read inside nginx over cosockets too", function()
      local res = assert(http.new { retry = false }:request { url = BASE .. "/from-nginx" })
      local out = cjson.decode(res.body)
      assert.is_truthy(out.request_id:find("^srv%-%x+$"))
      assert.is_truthy(out.correlation_id:find(UUID))
      assert.are.equal(out.correlation_id, out.received)
    end)
  end)

  describe("on results and errors", function()
    it("a transport error carries the correlation id (and no request id: there was no answer)", function()
      local none, err = http.new { retry = false, timeout = 0.3 }:request { url = BASE .. "/slow" }
      assert.is_nil(none)
      assert.are.equal("timeout", err.code)
      assert.is_truthy(err.correlation_id:find(UUID))
      assert.is_nil(err.request_id)
    end)

    it("a result built from an answer carries its ids; the next one without an answer none", function()
      local res = assert(http.new { retry = false }:request { url = BASE .. "/answer" })
      local r = gateway.result { status = "paid", provider = "spec" }
      assert.are.equal(res.request_id, r.request_id)
      assert.are.equal(res.correlation_id, r.correlation_id)
      local later = gateway.result { status = "paid", provider = "spec" }
      assert.is_nil(later.request_id)
      assert.is_nil(later.correlation_id)
    end)

    it("a provider error built from an answer carries its ids; a validation error none", function()
      local res = assert(http.new { retry = false }:request { url = BASE .. "/answer?status=400" })
      local v = errors.validation("amount", "invalid", "bad amount")
      assert.is_nil(v.request_id)
      local e = errors.provider { code = "declined", provider = "spec" }
      assert.are.equal(res.request_id, e.request_id)
      assert.are.equal(res.correlation_id, e.correlation_id)
    end)

    it("an answer's ids do not reach a result built after a later transport error", function()
      local t = http.new { retry = false, timeout = 0.3 }
      assert(t:request { url = BASE .. "/answer" })
      assert.is_nil(t:request { url = BASE .. "/slow" })
      assert.is_nil(gateway.result { status = "pending" }.request_id)
    end)

    it("stay with the coroutine that received the answer", function()
      local t = http.new { retry = false }
      local res
      local co = coroutine.create(function() res = assert(t:request { url = BASE .. "/answer" }) end)
      assert(coroutine.resume(co))
      assert.is_nil(gateway.result { status = "paid" }.request_id) -- the main thread saw no answer
      assert.is_truthy(res.request_id)
    end)

    it("reach a provider's result or error with no provider code (Moka's status call)", function()
      local moka = assert(require("paykit").moka { dealer_code = "1", username = "u", password = "p",
        base_url = BASE .. "/answer?x=", retry = false })
      local r, err = moka:status("order-1")
      local got = r or err
      assert.is_truthy(got.request_id and got.request_id:find("^srv%-%x+$"))
      assert.is_truthy(got.correlation_id:find(UUID))
    end)

    it("carry the correlation id given with http.with to a provider's call", function()
      local moka = assert(require("paykit").moka { dealer_code = "1", username = "u", password = "p",
        base_url = BASE .. "/answer?x=", retry = false })
      local r, err = http.with({ correlation_id = "order-7" }, moka.status, moka, "order-7")
      assert.are.equal("order-7", (r or err).correlation_id)
    end)

    it("read a JSON member as a whole decode of the answer would (the member picked alone)", function()
      local t = http.new { retry = false, request_id_field = "requestId" }
      local JSON = { ["content-type"] = "application/json" }
      -- the reference: the whole answer decoded by lua-cjson, the member cleaned
      local function reference(body)
        local j = require("cjson.safe").decode(body)
        return type(j) == "table" and http.clean_id(j.requestId) or nil
      end
      local bodies = {
        '{"requestId":"abc-1"}', '{"a":1,"requestId":"abc-2","b":[1,2,{"requestId":"inner"}]}',
        '{"requestId":"first","requestId":"last"}', '{"\\u0072equestId":"escaped-name"}',
        '{"requestId":12345}', '{"requestId":1.5}', '{"requestId":null}', '{"requestId":""}',
        '{"requestId":"has space"}', '{"requestId":"' .. ("x"):rep(300) .. '"}', '["requestId"]',
        '"requestId"', '{"requestId":"ok"', '{"requestId":"ok"}trailing', '{"requestId":"\\u00e9"}',
        '{"requestId":"a\\tb"}', '{"requestId":{"id":"nested"}}', '{"other":"requestId"}',
        '{"requestId":"\\ud800"}', '{"requestId":"x\255y"}', '{"requestid":"case"}',
      }
      local r = 7
      for _ = 1, 300 do -- a member among others, in random order, as a string or not
        local parts = {}
        for k = 1, 1 + r % 5 do
          r = (r * 1103 + 12345) % 65536
          parts[#parts + 1] = (r % 3 == 0) and ('"requestId":"id-' .. r .. '"') or
            (r % 3 == 1) and ('"k' .. k .. '":{"requestId":' .. r .. '}') or ('"requestId":' .. r)
        end
        bodies[#bodies + 1] = "{" .. table.concat(parts, ",") .. "}"
      end
      for _, body in ipairs(bodies) do
        local got = http._request_id_of(t, { status = 200, headers = JSON, body = body }, true)
        assert.are.equal(reference(body), got, body)
      end
      -- not read for an answer that does not say it is JSON
      assert.is_nil(http._request_id_of(t, { status = 200, headers = {}, body = '{"requestId":"abc"}' }, true))
    end)

    it("MoCoPay's answers are read for their requestId member", function()
      local gw = assert(require("paykit").mocopay { api_key = "k", api_secret = "s", base_url = BASE })
      assert.are.equal("requestId", gw.http.request_id_field)
    end)
  end)
end)
