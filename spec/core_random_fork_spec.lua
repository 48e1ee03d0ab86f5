-- core.random_bytes / random_hex / uuid4 serve bytes from a buffer (csrc/crypto.c): a forked
-- child must never hand out its parent's bytes. nginx forks its workers after the master
-- loaded paykit.core, so this forks the very process that already filled the buffer:
-- spec/support/fork_host.c is a Lua host (built here for the runtime running the spec) that
-- gives the script fork() (the C library's, its fork handlers run) and rawfork() (the system
-- call alone: no fork handler runs). Each is run with the buffer in MADV_WIPEONFORK pages
-- (the kernel zeroes them in the child) and with PAYKIT_RANDOM_PID_CHECK=1 (a static buffer
-- checked against getpid on every draw, what serves where the kernel cannot wipe).
local is_jit = type(jit) == "table"
local runtime = is_jit and "luajit" or "lua5.4"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  if ok == true or ok == 0 then code = 0 end
  return code or 1, out
end

local host = "build/test/fork_host_" .. runtime
local built = false
local function build_host() -- once per run (never a stale host from an older fork_host.c)
  if built then return end
  built = true
  local pkg = is_jit and "luajit" or "lua5.4"
  local code, out = sh("mkdir -p build/test && cc -O1 -o " .. host .. " spec/support/fork_host.c"
    .. " $(pkg-config --cflags --libs " .. pkg .. ")")
  assert(code == 0, "building the fork host failed: " .. out)
end

local SCRIPT = [=[
package.cpath = "./build/RUNTIME/?.so;" .. package.cpath
local core = require "paykit.core"
local which, out = arg[1], arg[2]
-- fill this process's buffer, so a child would inherit unserved bytes
assert(#core.uuid4() == 36)
print("WIPED " .. tostring(core._random_wiped_on_fork()))
local function draw()
  local t = {}
  for _ = 1, 40 do t[#t + 1] = core.uuid4() end
  for _ = 1, 10 do t[#t + 1] = core.random_hex(16) end
  t[#t + 1] = core.hex_encode(core.random_bytes(32))
  return t
end
local pid = (which == "raw") and rawfork() or fork()
if pid == nil then print("NOFORK") return end
if pid == 0 then
  local f = io.open(out .. ".child", "w")
  f:write(table.concat(draw(), "\n"), "\n")
  f:close()
  exit(0)
end
local f = io.open(out .. ".parent", "w")
f:write(table.concat(draw(), "\n"), "\n")
f:close()
print("CHILD_EXIT " .. tostring(wait(pid)))
]=]

local function lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end

local function run(which, pid_check)
  build_host()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write((SCRIPT:gsub("RUNTIME", runtime)))
  f:close()
  local out = os.tmpname()
  local code, text = sh((pid_check and "PAYKIT_RANDOM_PID_CHECK=1 " or "") .. host .. " " .. script .. " "
    .. which .. " " .. out)
  os.remove(script)
  assert(code == 0, "the fork host failed: " .. text)
  if text:find("NOFORK") then return nil end
  assert.truthy(text:find("CHILD_EXIT 0", 1, true), text)
  if pid_check then assert.truthy(text:find("WIPED false", 1, true), text) end
  local parent, child = lines(out .. ".parent"), lines(out .. ".child")
  os.remove(out); os.remove(out .. ".parent"); os.remove(out .. ".child")
  return parent, child
end

local function assert_disjoint(parent, child)
  assert.equal(51, #parent)
  assert.equal(51, #child)
  local seen = {}
  for _, v in ipairs(parent) do seen[v] = true end
  for i, v in ipairs(child) do
    assert.is_nil(seen[v], "the child served the parent's random bytes (line " .. i .. ": " .. v .. ")")
  end
  for i = 1, 40 do
    assert.truthy(parent[i]:find("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"), parent[i])
    assert.truthy(child[i]:find("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"), child[i])
  end
end

describe("core random bytes across fork", function()
  for _, mode in ipairs { { false, "in pages the kernel wipes on fork" }, { true, "pid-checked (PAYKIT_RANDOM_PID_CHECK=1)" } } do
    local pid_check, how = mode[1], mode[2]
    it("a child forked by the C library's fork never serves the parent's buffered bytes, " .. how, function()
      local parent, child = run("fork", pid_check)
      assert_disjoint(parent, child)
    end)

    it("a child made by the fork system call alone (no fork handlers) never does either, " .. how, function()
      local parent, child = run("raw", pid_check)
      if parent == nil then pending("no fork system call on this architecture") return end
      assert_disjoint(parent, child)
    end)
  end

  it("uses wiped pages on this machine's kernel (Linux 4.14 and later)", function()
    local core = require "paykit.core"
    assert.is_true(core._random_wiped_on_fork())
  end)
end)
