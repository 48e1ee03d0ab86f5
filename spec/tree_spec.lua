-- Tree hygiene: no file that git tracks carries a merge's conflict markers. A line that starts
-- with "<<<<<<< ", "||||||| " (diff3 style) or ">>>>>>> ", or is exactly "=======", fails the
-- spec with the file and line. Markdown's setext headings ("===" under a title) are different
-- from exactly seven "=", and a marker inside a line (a string in a spec, a comment) is not one.
-- Files with a NUL byte in their first 8000 bytes are binary (git's own test) and are skipped.
-- The file list comes from `git ls-files`; outside a git checkout, or without git, the tree
-- check is pending with the reason.

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local luasrc = require "spec.support.luasrc"
local function read(path) return luasrc.read(path, true) end

-- The markers, built so that this file never has one at the start of a line.
local OPEN, BASE, CLOSE = string.rep("<", 7) .. " ", string.rep("|", 7) .. " ", string.rep(">", 7) .. " "
local MID = string.rep("=", 7)

-- The numbers and texts of the lines of `text` that are conflict markers.
local function markers(text)
  local found, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    local head = line:sub(1, 8)
    if head == OPEN or head == BASE or head == CLOSE or line == MID then
      found[#found + 1] = { line = n, text = line }
    end
  end
  return found
end

local function binary(text) return text:sub(1, 8000):find("\0", 1, true) ~= nil end

-- The directory this spec file is in (the checkout's spec/), so that the tree scanned is the
-- one the spec belongs to, wherever busted was started.
local function here()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or nil
  return dir or "."
end

-- The repository's top directory and its tracked files, or nil and why not.
local function tracked_files()
  local p = io.popen("git -C " .. sh_quote(here()) .. " rev-parse --show-toplevel 2>/dev/null")
  local top = p and p:read("*l")
  if p then p:close() end
  if not top or top == "" then return nil, "not in a git checkout (or git is not installed)" end
  p = io.popen("git -C " .. sh_quote(top) .. " ls-files -z 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  local files = {}
  for name in out:gmatch("([^%z]+)") do files[#files + 1] = name end
  if #files == 0 then return nil, "git ls-files listed no file in " .. top end
  return top, files
end

describe("tree hygiene", function()
  describe("the marker scan", function()
    it("finds each kind of conflict marker with its line number", function()
      local text = table.concat({ "a", OPEN .. "HEAD", "ours", BASE .. "base", "old", MID, "theirs",
        CLOSE .. "other", "b" }, "\n")
      local found = markers(text)
      assert.same({ 2, 4, 6, 8 }, { found[1].line, found[2].line, found[3].line, found[4].line })
      assert.equal(4, #found)
      assert.equal(MID, found[3].text)
    end)

    it("finds a marker on a CRLF line and on the last line without a newline", function()
      local found = markers("x\r\n" .. MID .. "\r\ny\r\n" .. CLOSE .. "b")
      assert.equal(2, #found)
      assert.same({ 2, 4 }, { found[1].line, found[2].line })
    end)

    it("leaves setext headings, longer rules and markers inside a line alone", function()
      local text = table.concat({ "Title", "===", "Other", string.rep("=", 8), string.rep("=", 6),
        " " .. MID, MID .. " ", "x = '" .. OPEN .. "'", string.rep("<", 7) .. "no space",
        string.rep("<", 8) .. " eight" }, "\n")
      assert.same({}, markers(text))
    end)

    it("tells binary content (a NUL byte) from text", function()
      assert.is_true(binary("ab\0cd"))
      assert.is_false(binary("plain text\n"))
    end)
  end)

  it("no file git tracks carries a conflict marker", function()
    local top, files = tracked_files()
    if not top then pending(files); return end
    local bad, scanned = {}, 0
    for _, name in ipairs(files) do
      local text = read(top .. "/" .. name)   -- nil: deleted in the work tree, or not a file
      if text and not binary(text) then
        scanned = scanned + 1
        for _, m in ipairs(markers(text)) do bad[#bad + 1] = name .. ":" .. m.line .. ": " .. m.text end
      end
    end
    assert.is_true(scanned > 0, "no text file was read under " .. top)
    assert.are.same({}, bad)
  end)
end)
