-- A scripted Moka answerer for the specs: a real nginx on 127.0.0.1 that counts every API
-- request it receives and answers each path with the body the spec set for it (default: an
-- envelope that Moka would never send, ResultCode "Stub.NoAnswerSet").
--   local stub = require "spec.support.moka_stub"
--   lazy_setup(function() base = stub.start() end)        -- "http://127.0.0.1:18823"
--   stub.answer("/PaymentDealer/DoDirectPayment", '{"Data":...,"ResultCode":"Success"}')
--   stub.reset(); ...; assert.equal(0, stub.count())
--   stub.last()                                            -- the last request body received
--   lazy_teardown(function() stub.stop() end)
-- Answers set with answer() stay until reset() or the next answer() for the same path.
local nginx = require "spec.support.nginx"
local core = require "paykit.core"

local M = {}

local PORT = tonumber(os.getenv("PAYKIT_TEST_MOKA_STUB2_PORT") or "18823")

local CONF = [[
  lua_shared_dict moka_stub 1m;
  server {
    listen 127.0.0.1:${PORT};
    location = /_stub/count { content_by_lua_block { ngx.say(ngx.shared.moka_stub:get("count") or 0) } }
    location = /_stub/last { content_by_lua_block { ngx.print(ngx.shared.moka_stub:get("last") or "") } }
    location = /_stub/reset { content_by_lua_block { ngx.shared.moka_stub:flush_all(); ngx.say("reset") } }
    location = /_stub/answer {
      content_by_lua_block {
        ngx.req.read_body()
        local path = ngx.unescape_uri(ngx.var.arg_path or "")
        ngx.shared.moka_stub:set("answer:" .. path, ngx.req.get_body_data() or "")
        ngx.shared.moka_stub:set("status:" .. path, tonumber(ngx.var.arg_status) or 200)
        ngx.say("ok")
      }
    }
    location / {
      content_by_lua_block {
        local dict = ngx.shared.moka_stub
        dict:incr("count", 1, 0)
        ngx.req.read_body()
        dict:set("last", ngx.req.get_body_data() or "")
        local path = ngx.var.uri
        local body = dict:get("answer:" .. path)
        ngx.status = dict:get("status:" .. path) or 200
        ngx.header.content_type = "application/json; charset=utf-8"
        ngx.print(body or '{"Data":null,"ResultCode":"Stub.NoAnswerSet","ResultMessage":"","Exception":null}')
      }
    }
  }
]]

local srv, client

function M.url() return "http://127.0.0.1:" .. PORT end

function M.start()
  if not srv then srv = nginx.start("moka_stub2", CONF, { PORT = PORT }) end
  return M.url()
end

function M.stop()
  if client then client:close(); client = nil end
  if srv then srv:stop(); srv = nil end
end

local function http(method, path, body)
  client = client or core.http_client { timeout = 10000 }
  local res, err = client:request { method = method, url = M.url() .. path, body = body, headers = {} }
  assert(res, err)
  assert(res.status == 200, "stub answered " .. tostring(res.status))
  return res.body
end

--- The number of API requests received since the last reset.
function M.count() return tonumber((http("GET", "/_stub/count"):gsub("%s+$", ""))) end
--- The body of the last API request.
function M.last() return http("GET", "/_stub/last") end
--- Forgets the answers, the count and the last request.
function M.reset() http("POST", "/_stub/reset", "") end
--- Sets the answer (body text, HTTP status) for an API path.
function M.answer(path, body, status)
  http("POST", "/_stub/answer?path=" .. core.pct_encode(path) .. "&status=" .. tostring(status or 200), body)
end

--- A Moka envelope as JSON text: data is raw JSON text ("null", '{"IsSuccessful":true}').
function M.envelope(data, result_code)
  return '{"Data":' .. data .. ',"ResultCode":"' .. (result_code or "Success") .. '","ResultMessage":"","Exception":null}'
end

return M
