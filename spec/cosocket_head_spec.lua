-- paykit.cosocket reads the usual answer without the C parser (fast_head): wherever it takes an
-- answer, it must give what core.http_response_parser gives for the same bytes (status, headers,
-- body, keep-alive), and it must leave every unusual answer to the C parser.
local core = require "paykit.core"
local cosocket = require "paykit.cosocket"
local fast = cosocket._fast_head

local function c_parse(data, max_body)
  local p = core.http_response_parser { max_body = max_body }
  local done, err, code = p:feed(data)
  if done == nil then p:close(); return nil, err, code end
  if not done then p:close(); return false end
  local res = p:result()
  p:close()
  return res
end

local function fast_parse(data, max_body)
  local status, headers, body_at, length, keep = fast(data, max_body)
  if not status then return nil end
  local have = #data - body_at + 1
  if have < length then return nil end
  if have > length then keep = false end
  return { status = status, headers = headers, body = data:sub(body_at, body_at + length - 1), keepalive = keep }
end

local CRLF = "\r\n"
local function answer(status_line, headers, body)
  return status_line .. CRLF .. table.concat(headers, CRLF) .. (#headers > 0 and CRLF or "") .. CRLF .. body
end

describe("paykit.cosocket fast answer reading", function()
  local taken = {
    answer("HTTP/1.1 200 OK", { "Content-Type: application/json", "Content-Length: 11" }, '{"a":"b c"}'),
    answer("HTTP/1.1 201 Created", { "content-length: 0" }, ""),
    answer("HTTP/1.1 404 Not Found", { "Server: x", "Content-Length: 3", "Connection: close" }, "abc"),
    answer("HTTP/1.1 503 Busy", { "Set-Cookie: a=1", "Set-Cookie: b=2", "Content-Length: 2" }, "no"),
    answer("HTTP/1.1 200 OK", { "X-Id:abc", "Content-Length: 2", "Connection: Keep-Alive" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2" }, "ok") .. "HTTP/1.1 200 OK", -- bytes beyond it
  }
  for i, data in ipairs(taken) do
    it("takes usual answer " .. i .. " and gives what the C parser gives", function()
      local f = fast_parse(data, 1000)
      assert.is_table(f)
      local c = c_parse(data, 1000)
      assert.is_table(c)
      assert.same(c, f)
    end)
  end

  local left = {
    answer("HTTP/1.1 200 OK", { "Transfer-Encoding: chunked" }, "2\r\nok\r\n0\r\n\r\n"),
    answer("HTTP/1.0 200 OK", { "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 100 Continue", {}, "") .. answer("HTTP/1.1 200 OK", { "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 204 No Content", { "Content-Length: 2" }, ""),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: +2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Content-Length: 2000" }, "ok"), -- above max_body: too_large
    answer("HTTP/1.1 200 OK", { "Bad Name: x", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v\nX-B: w", "Content-Length: 2" }, "ok"), -- a bare LF
    answer("HTTP/1.1 200 OK", { "X-A: v\0w", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A:  padded ", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v", " folded", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "Connection: upgrade", "Content-Length: 2" }, "ok"),
    answer("HTTP/1.1 200 OK", { "X-A: v" }, "ok"), -- no length: read to the close
    answer("HTTP/1.1 999 What", { "Content-Length: 2" }, "ok"),
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", -- the head is not whole yet
  }
  for i, data in ipairs(left) do
    it("leaves unusual answer " .. i .. " to the C parser", function()
      assert.is_nil((fast(data, 1000)))
    end)
  end
end)
