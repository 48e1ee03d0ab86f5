-- core.http_response_parser: the C HTTP/1.1 response parser (libhttp-parser) behind the
-- cosocket transport. Pure parser specs: they run under Lua 5.4, LuaJIT and valgrind.
local core = require "paykit.core"

local function parse(bytes, opts)
  local p = core.http_response_parser(opts)
  local done, err, code = p:feed(bytes)
  if done == nil then p:close(); return nil, err, code end
  if not done then done, err, code = p:finish() end
  if not done then p:close(); return nil, err, code end
  local res = p:result()
  p:close()
  return res
end

-- Asserts a refusal, nil, message, code, with the given code; returns the message.
local function assert_refused(code, done, err, got)
  assert.is_nil(done)
  assert.equal(code, got)
  assert.is_string(err)
  return err
end

-- Feeds bytes that stop short of a whole response, then ends the stream: finish() must refuse
-- with code protocol. Returns the message.
local function refused_at_eof(bytes)
  local p = core.http_response_parser()
  assert.is_false(p:feed(bytes))
  local done, err, code = p:finish()
  p:close()
  return assert_refused("protocol", done, err, code)
end

local CHUNKED = "HTTP/1.1 200 OK\r\n"
  .. "Content-Type: application/json\r\n"
  .. "Transfer-Encoding: chunked\r\n"
  .. "X-Trace: a\r\n"
  .. "x-trace: b\r\n"
  .. "\r\n"
  .. "7;name=value\r\n{\"ok\":t\r\n"
  .. "5;ext\r\nrue}\n\r\n"
  .. "0\r\n"
  .. "\r\n"

local LENGTH = "HTTP/1.1 201 Created\r\nContent-Length: 11\r\nLocation: /p/1\r\n\r\nhello world"

describe("core.http_response_parser", function()
  describe("Content-Length responses", function()
    it("returns status, lowercase headers, body and keepalive", function()
      local res = assert(parse(LENGTH))
      assert.equal(201, res.status)
      assert.equal("11", res.headers["content-length"])
      assert.equal("/p/1", res.headers.location)
      assert.is_nil(res.headers.Location)
      assert.equal("hello world", res.body)
      assert.is_true(res.keepalive)
    end)

    it("is done exactly when the last body byte arrives", function()
      local p = core.http_response_parser()
      assert.is_false(p:feed(LENGTH:sub(1, -2)))
      assert.is_true(p:feed(LENGTH:sub(-1)))
      assert.equal("hello world", p:result().body)
      p:close()
    end)

    it("gives the same result for a split at every byte position", function()
      for i = 1, #LENGTH - 1 do
        local p = core.http_response_parser()
        assert.is_false(p:feed(LENGTH:sub(1, i)))
        assert.is_true(p:feed(LENGTH:sub(i + 1)))
        local res = p:result()
        assert.equal(201, res.status)
        assert.equal("hello world", res.body)
        assert.equal("/p/1", res.headers.location)
        p:close()
      end
    end)

    it("refuses a truncated body at end of stream", function()
      assert.matches("closed before the response was complete",
        refused_at_eof("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    end)

    it("refuses two different Content-Length headers", function()
      assert_refused("protocol", parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"))
    end)
  end)

  describe("chunked responses", function()
    it("joins the chunks and ignores chunk extensions", function()
      local res = assert(parse(CHUNKED))
      assert.equal(200, res.status)
      assert.equal('{"ok":true}\n', res.body)
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.is_true(res.keepalive)
    end)

    it("joins repeated headers with a comma", function()
      local res = assert(parse(CHUNKED))
      assert.equal("a, b", res.headers["x-trace"])
    end)

    it("gives the same result for a split at every byte position", function()
      for i = 1, #CHUNKED - 1 do
        local p = core.http_response_parser()
        assert.is_false(p:feed(CHUNKED:sub(1, i)))
        assert.is_true(p:feed(CHUNKED:sub(i + 1)))
        local res = p:result()
        assert.equal('{"ok":true}\n', res.body)
        assert.equal("a, b", res.headers["x-trace"])
        p:close()
      end
    end)

    it("gives the same result fed one byte at a time", function()
      local p = core.http_response_parser()
      for i = 1, #CHUNKED - 1 do assert.is_false(p:feed(CHUNKED:sub(i, i))) end
      assert.is_true(p:feed(CHUNKED:sub(-1)))
      assert.equal('{"ok":true}\n', p:result().body)
      p:close()
    end)

    it("reads trailers without adding them to the body", function()
      local res = assert(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n"))
      assert.equal("abc", res.body)
      assert.equal("42", res.headers["x-checksum"])
    end)

    it("refuses an invalid chunk size", function()
      assert.matches("chunk size", assert_refused("protocol",
        parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")))
    end)

    it("refuses a stream that ends inside a chunk", function()
      assert.matches("closed before the response was complete",
        refused_at_eof("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"))
    end)
  end)

  describe("read-until-close responses", function()
    it("ends the body at finish() and is not kept alive", function()
      local p = core.http_response_parser()
      assert.is_false(p:feed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one,"))
      assert.is_false(p:feed(" part two"))
      assert.is_true(p:finish())
      local res = p:result()
      assert.equal("part one, part two", res.body)
      assert.is_false(res.keepalive)
      p:close()
    end)

    it("refuses end of stream inside the headers", function()
      assert.matches("closed before the response was complete", refused_at_eof("HTTP/1.1 200 OK\r\nContent-Ty"))
    end)
  end)

  describe("malformed responses", function()
    local cases = {
      ["a garbage status line"] = "garbage\r\n\r\n",
      ["a non-numeric status"] = "HTTP/1.1 abc OK\r\n\r\n",
      ["a four-digit status"] = "HTTP/1.1 2000 OK\r\n\r\n",
      ["an invalid Content-Length"] = "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
      ["a space inside a header name"] = "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
      ["a header line without a colon"] = "HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n",
      ["an HTTP/2 version"] = "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
      -- ISSUE8 item 2: a status outside 100-599 is no answer
      ["a two-digit status"] = "HTTP/1.1 21 OK\r\nContent-Length: 2\r\n\r\nok",
      ["a status of 600"] = "HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n",
      ["a status of 999"] = "HTTP/1.1 999 OK\r\nContent-Length: 0\r\n\r\n",
      ["a status of 000"] = "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n",
      ["a status of 099"] = "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
    }
    for name, bytes in pairs(cases) do
      it("refuses " .. name .. " with code protocol", function()
        local p = core.http_response_parser()
        assert.matches("malformed HTTP response", assert_refused("protocol", p:feed(bytes)))
        p:close()
      end)
    end

    it("keeps refusing after an error until reset", function()
      local p = core.http_response_parser()
      assert_refused("protocol", p:feed("garbage\r\n\r\n"))
      assert_refused("protocol", p:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
      p:reset()
      assert.is_true(p:feed("HTTP/1.1 204 No Content\r\n\r\n"))
      assert.equal(204, p:result().status)
      p:close()
    end)
  end)

  describe("the body cap (max_body)", function()
    it("refuses a Content-Length above the cap before reading the body", function()
      local p = core.http_response_parser { max_body = 100 }
      local err = assert_refused("too_large", p:feed("HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n"))
      assert.matches("size limit", err)
      p:close()
    end)

    it("accepts a body of exactly the cap", function()
      local res = assert(parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" .. string.rep("x", 100),
        { max_body = 100 }))
      assert.equal(100, #res.body)
    end)

    it("refuses a chunked body that grows above the cap", function()
      local p = core.http_response_parser { max_body = 10 }
      assert.is_false(p:feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n"))
      assert_refused("too_large", p:feed("6\r\nghijkl\r\n0\r\n\r\n"))
      p:close()
    end)

    it("refuses a read-until-close body that grows above the cap", function()
      local p = core.http_response_parser { max_body = 4 }
      assert_refused("too_large", p:feed("HTTP/1.1 200 OK\r\n\r\n12345"))
      p:close()
    end)

    it("refuses headers above libhttp-parser's limit with too_large", function()
      local p = core.http_response_parser()
      assert_refused("too_large", p:feed("HTTP/1.1 200 OK\r\nX-Big: " .. string.rep("a", 100 * 1024) .. "\r\n\r\n"))
      p:close()
    end)

    it("rejects a negative cap as misuse", function()
      assert.has_error(function() core.http_response_parser { max_body = -1 } end)
      assert.has_error(function() core.http_response_parser { max_body = "big" } end)
    end)
  end)

  describe("the keepalive flag", function()
    local cases = {
      { "HTTP/1.1 with no Connection header", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true },
      { "HTTP/1.1 with Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.0 with no Connection header", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false },
      { "HTTP/1.0 with Connection: keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true },
    }
    for _, c in ipairs(cases) do
      it("is " .. tostring(c[3]) .. " for " .. c[1], function()
        local p = core.http_response_parser()
        assert.is_true(p:feed(c[2]))
        assert.equal(c[3], p:result().keepalive)
        p:close()
      end)
    end

    it("is false when bytes follow the end of the response", function()
      local p = core.http_response_parser()
      assert.is_true(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"))
      local res = p:result()
      assert.equal("ok", res.body)
      assert.is_false(res.keepalive)
      p:close()
    end)
  end)

  describe("interim and bodiless responses", function()
    it("skips a 100 Continue and returns the final response", function()
      local res = assert(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
      assert.equal(200, res.status)
      assert.equal("ok", res.body)
    end)

    it("reads no body after a 204", function()
      local p = core.http_response_parser()
      assert.is_true(p:feed("HTTP/1.1 204 No Content\r\n\r\n"))
      assert.equal("", p:result().body)
      p:close()
    end)

    it("reads no body for a HEAD request even with a Content-Length", function()
      local p = core.http_response_parser { head = true }
      assert.is_true(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"))
      local res = p:result()
      assert.equal("5000", res.headers["content-length"])
      assert.equal("", res.body)
      assert.is_true(res.keepalive)
      p:close()
    end)

    it("keeps an empty header value", function()
      local res = assert(parse("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n"))
      assert.equal("", res.headers["x-empty"])
    end)
  end)

  describe("reset and reuse", function()
    it("parses a second response on the same parser after reset", function()
      local p = core.http_response_parser()
      assert.is_true(p:feed(LENGTH))
      assert.equal("hello world", p:result().body)
      assert.equal(p, p:reset())
      assert.is_false(p:feed(CHUNKED:sub(1, 40)))
      assert.is_true(p:feed(CHUNKED:sub(41)))
      local res = p:result()
      assert.equal(200, res.status)
      assert.equal('{"ok":true}\n', res.body)
      assert.is_nil(res.headers.location) -- nothing left from the first response
      p:close()
    end)

    it("can switch to a HEAD response on reset", function()
      local p = core.http_response_parser()
      p:reset { head = true }
      assert.is_true(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))
      p:reset()
      assert.is_false(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))
      assert.is_true(p:feed("abc"))
      assert.equal("abc", p:result().body)
      p:close()
    end)
  end)

  describe("lifecycle and misuse", function()
    it("raises when result() is asked before the response is complete", function()
      local p = core.http_response_parser()
      p:feed("HTTP/1.1 200 OK\r\n")
      assert.has_error(function() p:result() end)
      p:close()
    end)

    it("raises on a non-string feed", function()
      local p = core.http_response_parser()
      assert.has_error(function() p:feed({}) end)
      p:close()
    end)

    it("closes idempotently and refuses use after close", function()
      local p = core.http_response_parser()
      p:close()
      p:close()
      assert.matches("closed", tostring(p))
      assert.has_error(function() p:feed("HTTP/1.1 200 OK\r\n") end, "http response parser is closed")
    end)

    it("frees its buffers from __gc", function()
      local p = core.http_response_parser()
      p:feed(CHUNKED:sub(1, 60))
      local mt = getmetatable(p)
      assert.is_function(mt.__gc)
      mt.__gc(p)
      assert.matches("closed", tostring(p))
      p = nil -- luacheck: ignore 311 (dropped for the collector)
      collectgarbage()
    end)

    if _VERSION == "Lua 5.4" then
      it("closes at the end of a to-be-closed scope on Lua 5.4", function()
        local chunk = assert(load([[
          local core = ...
          local keep
          do
            local p <close> = core.http_response_parser()
            keep = p
          end
          return keep
        ]]))
        local p = chunk(core)
        assert.matches("closed", tostring(p))
      end)
    end
  end)
end)
