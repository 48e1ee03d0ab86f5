-- The sandbox for specs: started on PAYKIT_TEST_SANDBOX_PORT (default 18790) once per busted
-- process and stopped when the last user calls stop().
--   local sb = require "spec.support.sandbox"
--   lazy_setup(function() base = sb.start() end)     -- "http://127.0.0.1:18790"
--   lazy_teardown(function() sb.stop() end)
local sandbox = require "paykit.sandbox"

local M = { users = 0 }

function M.port() return tonumber(os.getenv("PAYKIT_TEST_SANDBOX_PORT")) or 18790 end

function M.start()
  if M.users == 0 then sandbox.start{ port = M.port() } end
  M.users = M.users + 1
  return sandbox.url{ port = M.port() }
end

function M.stop()
  M.users = M.users - 1
  if M.users <= 0 then M.users = 0; sandbox.stop{ port = M.port() } end
end

function M.url() return sandbox.url{ port = M.port() } end
function M.error_log() return sandbox.error_log{ port = M.port() } end

return M
