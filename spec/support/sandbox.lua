-- The sandbox for specs: started on PAYKIT_TEST_SANDBOX_PORT (default 18790) once per busted
-- process and stopped when the last user calls stop(); plus one HTTP client on it.
--   local sb = require "spec.support.sandbox"
--   lazy_setup(function() base = sb.start() end)     -- "http://127.0.0.1:18790"
--   lazy_teardown(function() sb.stop() end)
--   local res = sb.request("GET", "/_sandbox/outbox")  -- res.status, res.body, res.json
--   local res = sb.post_json("/moka/_sandbox/3d/complete", {...})
--   local log = sb.sink_log("shop-notify", 2)         -- what /_sink/shop-notify received
local sandbox = require "paykit.sandbox"
local core = require "paykit.core"
local cjson = require "cjson.safe"

local M = { users = 0 }

function M.port() return tonumber(os.getenv("PAYKIT_TEST_SANDBOX_PORT")) or 18790 end

function M.start()
  if M.users == 0 then sandbox.start{ port = M.port() } end
  M.users = M.users + 1
  return sandbox.url{ port = M.port() }
end

local client
function M.stop()
  M.users = M.users - 1
  if M.users <= 0 then
    M.users = 0
    if client then client:close(); client = nil end
    sandbox.stop{ port = M.port() }
  end
end

function M.url() return sandbox.url{ port = M.port() } end
function M.error_log() return sandbox.error_log{ port = M.port() } end

-- The specs' one curl client (no redirects followed, 10 s timeout).
function M.http()
  if not client then client = core.http_client { timeout = 10000 } end
  return client
end

-- A request to the sandbox (a path is taken below its base URL). Raises when no answer came;
-- res.json is the decoded body when it is JSON.
function M.request(method, url, body, headers)
  if url:sub(1, 1) == "/" then url = M.url() .. url end
  local res, err = M.http():request { method = method, url = url, body = body, headers = headers or {} }
  assert(res, err)
  res.json = res.body ~= "" and cjson.decode(res.body) or nil
  return res
end

-- POST a JSON body; returns the response (res.json decoded).
function M.post_json(url, value)
  return M.request("POST", url, cjson.encode(value), { ["Content-Type"] = "application/json" })
end

-- What the sandbox's sink /_sink/<name> has recorded, waiting (5 s at most) until it holds at
-- least `want` requests (default 0: no waiting). Returns the list as it is then.
function M.sink_log(name, want)
  want = want or 0
  local list
  for _ = 1, 100 do
    list = M.request("GET", "/_sink/" .. name .. "/log").json
    if #list >= want then return list end
    os.execute("sleep 0.05")
  end
  return list
end

return M
