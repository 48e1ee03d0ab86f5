-- README's doc tests: every ```lua block of README.md runs, as written, against the sandbox,
-- under the runtime busted runs (spec/run: Lua 5.4 and LuaJIT), and a block that uses `ngx.`
-- (or whose comment says `nginx = true`) runs inside a content handler of an nginx this spec
-- starts (the handler is M.serve of the fixtures module, in location /; the fixture's
-- `request` gives the method, path, query, body and headers it gets). Every block needs a
-- fixture. `bash spec/run spec/readme_spec.lua` runs it under both runtimes;
-- PAYKIT_TEST_README=file runs another file's blocks (to see a broken block fail).
--
-- How a block is run
--   * The block is taken from README.md with its line number; errors point at README.md:LINE.
--   * The sandbox's URL: README names the sandbox as a user would, http://127.0.0.1:8790
--     (its default port). The specs' sandbox runs on spec/support/sandbox.lua's port (18790,
--     PAYKIT_TEST_SANDBOX_PORT), and `addresses` below is the one place where README's
--     "127.0.0.1:8790" is replaced by it (so a sandbox of your own on 8790 is never touched).
--   * The block's free names (save_order, redirect_browser, posted fields, ...) come from its
--     fixture, named by the HTML comment on the line right before the fence:
--         <!-- doctest: with = "moka_return" -->
--     (the comment is a Lua table body: `with` names the fixture, `nginx = true` runs a block
--     that does not mention ngx in nginx anyway). A block without one fails.
--   * After the block ran, its fixture checks what it did: the block's top-level locals (read
--     when the chunk returns, through a debug hook), the globals it set, and what the
--     fixture's own functions recorded (e.g. that grant_item_once was called once for order 17).
--
-- How to add a fixture (spec/support/readme_fixtures.lua): an entry
--     M.name = {
--       setup   = function(t) ... return data end,   -- optional, in this busted process, before the
--                   block: real work against the sandbox (t.sandbox is the sandbox's base URL,
--                   t.sb spec/support/sandbox.lua); `data` must be JSON-able for nginx blocks.
--       globals = function(data, rec) return { name = value, ... }, { lazy_name = fn } end,
--                   -- where the block runs: the merchant's functions and values it uses; a lazy
--                   -- name's fn() is called the first time the block reads it. `rec` is a table
--                   -- for the functions to record what was done.
--       request = function(data) return { method =, path =, query =, body =, headers = } end,
--                   -- nginx blocks only: the request the content handler gets (default GET /).
--       summary = function(locals, rec, env, data) return {...} end,
--                   -- where the block ran: what check needs (JSON-able for nginx blocks).
--       check   = function(s, data) ... end,          -- in this process: luassert on the summary.
--       teardown = function(data) end,                 -- optional, in this process: stop what
--                   setup started (a Redis of spec/support/redis.lua, a fault server, ...).
--       addresses = function(data) return { ["127.0.0.1:6379"] = "127.0.0.1:" .. data.port } end,
--                   -- optional: other addresses README names that the specs run elsewhere,
--                   -- replaced in the block's text like the sandbox's (see `addresses` below).
--     }
-- and `<!-- doctest: with = "name" -->` above the block. A block that is not Lua to run
-- (shell, nginx.conf) belongs in a ```sh / ```nginx fence, not ```lua.
local sb = require "spec.support.sandbox"
local nginx = require "spec.support.nginx"
local fixtures = require "spec.support.readme_fixtures"
local cjson = require "cjson.safe"
local core = require "paykit.core"

local README = os.getenv("PAYKIT_TEST_README") or "README.md"   -- another file: for checking this spec
local NGINX_PORT = tonumber(os.getenv("PAYKIT_TEST_README_NGINX_PORT")) or 18879

-- The blocks: {line = first line of code, code = text, fixture = name or nil, problem = text}.
local function blocks_of(path)
  local f = assert(io.open(path, "rb")); local text = f:read("*a"); f:close()
  local out, lineno, cur, prev = {}, 0, nil, nil
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if cur then
      if line:match("^%s*```%s*$") then out[#out + 1] = cur; cur = nil
      else cur.lines[#cur.lines + 1] = line end
    elseif line:match("^%s*```lua%s*$") then
      cur = { line = lineno + 1, lines = {} }
      local spec = prev and prev:match("^%s*<!%-%-%s*doctest:(.-)%-%->%s*$")
      if spec then
        local fn, err = (loadstring or load)("return {" .. spec .. "}")
        local ok, t = pcall(fn or error, err)
        if ok and type(t) == "table" then cur.fixture, cur.nginx = t.with, t.nginx == true
        else cur.problem = "unreadable doctest comment: " .. tostring(t) end
      end
    end
    prev = line
  end
  assert(not cur, path .. ": a ```lua block that is never closed")
  for _, b in ipairs(out) do b.code = table.concat(b.lines, "\n") .. "\n"; b.lines = nil end
  return out
end

-- The one place where README's addresses become the specs' servers: the sandbox's
-- "127.0.0.1:8790" always, plus what the fixture's `addresses` maps.
local function addresses(code, more)
  local map = { ["127.0.0.1:8790"] = "127.0.0.1:" .. sb.port() }
  for from, to in pairs(more or {}) do map[from] = to end
  for from, to in pairs(map) do
    code = code:gsub(from:gsub("%p", "%%%0"), function() return to end)
  end
  return code
end

local function uses_nginx(b) return b.nginx or b.code:match("ngx%.") ~= nil end

local BLOCKS = blocks_of(README)

describe("README.md's Lua blocks", function()
  local base, srv
  lazy_setup(function()
    base = sb.start()
    local needs_nginx = false
    for _, b in ipairs(BLOCKS) do if uses_nginx(b) then needs_nginx = true end end
    if needs_nginx then
      srv = nginx.start("readme-doctest", [[
  lua_socket_log_errors off;
  large_client_header_buffers 4 64k;
  client_body_buffer_size 64k;
  server {
    listen 127.0.0.1:${PORT};
    location / { content_by_lua_block { require("spec.support.readme_fixtures").serve() } }
  }
]], { PORT = NGINX_PORT })
    end
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    sb.stop()
  end)

  it("are all found, each with a fixture that exists", function()
    -- README has Lua blocks in the uniform flow, each provider, the journal and the sandbox
    assert.is_true(#BLOCKS >= 6, "only " .. #BLOCKS .. " ```lua blocks found in README.md")
    for _, b in ipairs(BLOCKS) do
      assert.is_nil(b.problem, "README.md:" .. b.line .. ": " .. tostring(b.problem))
      assert.is_string(b.fixture, "README.md:" .. b.line .. ": no <!-- doctest: with = \"...\" --> right before this ```lua block")
      assert.is_table(fixtures[b.fixture], "README.md:" .. b.line .. ": no fixture " .. tostring(b.fixture) ..
        " in spec/support/readme_fixtures.lua")
    end
  end)

  for _, b in ipairs(BLOCKS) do
    local where = "README.md:" .. b.line
    local mode = uses_nginx(b) and "in an nginx content handler" or "in plain " .. (jit and "LuaJIT" or _VERSION)
    it(where .. " (" .. tostring(b.fixture) .. ") runs as written " .. mode, function()
      local fx = assert(fixtures[b.fixture], where .. ": no fixture " .. tostring(b.fixture))
      assert.equal(200, sb.request("POST", "/_sandbox/reset").status)
      local t = { sandbox = base, sb = sb, where = where }
      local data = fx.setup and fx.setup(t) or {}
      local code = addresses(b.code, fx.addresses and fx.addresses(data))
      local ok, summary_or_err = pcall(function()
        if uses_nginx(b) then
          local req = fx.request and fx.request(data) or {}
          local headers = { ["X-Doctest-Fixture"] = b.fixture, ["X-Doctest-Line"] = tostring(b.line),
                            ["X-Doctest-Code"] = core.b64_encode(code),
                            ["X-Doctest-Data"] = core.b64_encode(assert(cjson.encode(data))) }
          for k, v in pairs(req.headers or {}) do headers[k] = v end
          local url = "http://127.0.0.1:" .. NGINX_PORT .. (req.path or "/") .. (req.query and ("?" .. req.query) or "")
          local res = sb.request(req.method or "GET", url, req.body, headers)
          local s = res.json
          assert(res.status == 200 and type(s) == "table",
            where .. ": the handler answered " .. res.status .. " " .. res.body .. "\n" .. srv:error_log():sub(-2000))
          if s.doctest_error then error(s.doctest_error, 0) end
          return s.summary
        end
        local r = fixtures.run(b.fixture, code, b.line, data)
        if r.error then error(r.error, 0) end
        return r.summary
      end)
      if fx.teardown then fx.teardown(data) end
      assert(ok, summary_or_err)
      fx.check(summary_or_err, data)
    end)
  end
end)
