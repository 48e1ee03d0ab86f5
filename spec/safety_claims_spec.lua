-- The safety claims and their attacks (docs/safety.md). The project's rule: every safety
-- claim in README must be backed by a spec that attacks it. This spec keeps docs/safety.md
-- true to README and to the specs:
--
--  * a claim is marked where it is made, by a line `<!-- safety: id [id...] -->` right before
--    its paragraph, bullet or table (README.md, docs/*.md); every marker has an entry in
--    docs/safety.md and every entry its marker, in the file the entry names;
--  * an entry's quote is in the marked block (runs of spaces and line breaks aside);
--  * every spec file an entry names exists, and every `it "..."` / `describe "..."` it names
--    is the literal name of a describe, it or pending of that file (a name ending in "..." is
--    the literal start of a name the file builds, `it("x " .. y)`, or of one of its string
--    literals, for a name it computes: `it(spec_name, ...)`);
--  * a README block (paragraph or bullet, code and tables aside) that uses the words of a
--    safety claim (CLAIM_WORDS) must carry a marker: a claim added with those words and no
--    entry, and so no attack, fails.
local luasrc = require "spec.support.luasrc"

local function norm(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- Words that make a sentence a safety claim (matched in lowercase).
local CLAIM_WORDS = {
  "constant time", "constant-time", "consteq", "exactly once", "sent once", "once per reference",
  "never resent", "never retried", "never sent again", "instead of resending", "never through a float",
  "never a float", "[redacted]", "scrubbed", "verified by default", "verification on", "tls 1.2",
  "fail closed", "fail-closed", "no request leaves", "no request reaches", "before any network call",
  "before any request", "before anything is sent", "never an unsigned", "never pays",
  "grant once", "grants once", "charged again", "without the password", "no card number",
  "never contains", "can pay yours", "not remembered",
}

--- The entries of a safety table's text: a list of {id=, file=, section=, quote=, attacks=
--- {{file=, names={{kind=, name=}...}}...}, line=}.
local function entries_of(text)
  local out, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local id = line:match("^## `([%w%-]+)`")
    if id then
      cur = { id = id, attacks = {}, line = n }
      out[#out + 1] = cur
    elseif cur then
      local file, section, quote = line:match('^Claim: (%S+) "([^"]*)": "(.*)"$')
      if file then
        cur.file, cur.section, cur.quote = file, section, quote
      elseif line:match("^%- Attack:") then
        local spec = line:match("^%- Attack: `([^`]+)`")
        local head = line:match("^(.-) %-%- ") or line
        local names = {}
        for kind, name in head:gmatch('(%a+) "([^"]*)"') do
          if kind == "it" or kind == "describe" then names[#names + 1] = { kind = kind, name = name } end
        end
        cur.attacks[#cur.attacks + 1] = { file = spec, names = names, how = line:match(" %-%- (.+)$"), line = n }
      end
    end
  end
  return out
end

--- The blocks of a markdown text: paragraphs, bullets and tables outside code fences, with
--- the ids of the marker lines right before each. {text=, line=, ids={...}, table=bool, heading=bool}
local function blocks_of(text)
  local out, cur, fence, pending = {}, nil, false, {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local marker = line:match("^<!%-%- safety: ([%w%- ]+) %-%->$")
    if line:match("^%s*```") then
      fence = not fence
      cur = nil
    elseif fence then -- luacheck: ignore 542
    elseif marker then
      cur = nil
      for id in marker:gmatch("[%w%-]+") do pending[#pending + 1] = id end
    elseif line:match("^%s*$") or line:match("^<!%-%-") then
      cur = nil
    else
      local row = line:match("^|") ~= nil
      -- a table is one block (a marker before it covers its rows); a heading, a bullet, or a
      -- line after a table or heading starts a block
      local starts = line:match("^#") or line:match("^%s*[-*] ") or (row and not (cur and cur.table))
        or (cur and cur.table and not row)
      if cur == nil or starts or cur.heading then
        cur = { text = line, line = n, ids = pending, heading = line:match("^#") ~= nil,
                table = line:match("^|") ~= nil }
        pending = {}
        out[#out + 1] = cur
      else
        cur.text = cur.text .. "\n" .. line
      end
    end
  end
  return out
end

--- The literal names of a spec source's describe, it and pending calls (the first string of
--- each; for `it("x " .. y)` that is "x ").
local function names_of(src)
  local out = {}
  for kind, q in src:gmatch("%f[%w_](%a+)%s*%(%s*()[\"']") do
    if kind == "describe" or kind == "it" or kind == "pending" then
      local quote = src:sub(q, q)
      local j = q + 1
      local buf = {}
      while j <= #src do
        local c = src:sub(j, j)
        if c == "\\" then buf[#buf + 1] = src:sub(j + 1, j + 1); j = j + 2
        elseif c == quote or c == "\n" then break
        else buf[#buf + 1] = c; j = j + 1 end
      end
      out[table.concat(buf)] = true
    end
  end
  return out
end

-- name is one of set, or ends in "..." and its start begins a name of set or, for a name
-- the file computes (`it(spec_name, ...)`), one of the file's short string literals.
local function has_name(set, name, src)
  if set[name] then return true end
  local prefix = name:match("^(.-)%.%.%.$")
  if not prefix or prefix == "" then return false end
  for n in pairs(set) do
    if n:sub(1, #prefix) == prefix then return true end
  end
  for _, lit in src:gmatch("([\"'])(.-)%1") do
    if lit:sub(1, #prefix) == prefix then return true end
  end
  return false
end

--- Every problem of a safety table against its documents and spec sources:
--- docs = {[path] = text}, read(path) -> source or nil. A list of messages.
local function problems(table_text, docs, read)
  local out = {}
  local function bad(fmt, ...) out[#out + 1] = fmt:format(...) end
  local entries = entries_of(table_text)
  local by_id = {}
  for _, e in ipairs(entries) do
    if by_id[e.id] then bad("docs/safety.md:%d: %s is listed twice", e.line, e.id) end
    by_id[e.id] = e
    if not e.file then bad("docs/safety.md:%d: %s has no Claim: line", e.line, e.id) end
    if #e.attacks == 0 then bad("docs/safety.md:%d: %s names no attacking spec", e.line, e.id) end
    for _, a in ipairs(e.attacks) do
      local src = a.file and read(a.file)
      if not a.file then bad("docs/safety.md:%d: an attack of %s names no spec file", a.line, e.id)
      elseif not src then bad("docs/safety.md:%d: %s: %s does not exist", a.line, e.id, a.file)
      else
        if not a.how then bad("docs/safety.md:%d: %s: %s says not how it attacks (` -- how`)", a.line, e.id, a.file) end
        if #a.names == 0 then bad("docs/safety.md:%d: %s: %s names no it or describe", a.line, e.id, a.file) end
        local set = names_of(src)
        for _, nm in ipairs(a.names) do
          if not has_name(set, nm.name, src) then
            bad("docs/safety.md:%d: %s: %s has no %s %q", a.line, e.id, a.file, nm.kind, nm.name)
          end
        end
      end
    end
  end
  -- markers: each with its entry, each entry's marker in its file, the quote in the block
  local marked = {}
  for path, text in pairs(docs) do
    for _, b in ipairs(blocks_of(text)) do
      for _, id in ipairs(b.ids) do
        local e = by_id[id]
        if not e then
          bad("%s:%d: the claim marked %s has no entry in docs/safety.md", path, b.line, id)
        elseif e.file == path then
          marked[id] = true
          if e.quote and not norm(b.text):find(norm(e.quote), 1, true) then
            bad("docs/safety.md:%d: %s's quote is not in the block marked in %s:%d: %q", e.line, id, path, b.line, e.quote)
          end
        else
          bad("%s:%d: %s is marked here, but its entry names %s", path, b.line, id, tostring(e.file))
        end
      end
    end
  end
  for _, e in ipairs(entries) do
    if e.file and not marked[e.id] then
      bad("docs/safety.md:%d: %s has no <!-- safety: %s --> marker in %s", e.line, e.id, e.id, e.file)
    end
  end
  return out
end

--- The README blocks that use a claim's words without a marker.
local function unmarked_claims(readme)
  local out = {}
  for _, b in ipairs(blocks_of(readme)) do
    if not b.heading and not b.table and #b.ids == 0 then
      local low = b.text:lower()
      for _, w in ipairs(CLAIM_WORDS) do
        if low:find(w, 1, true) then
          out[#out + 1] = ("README.md:%d (%q): %s"):format(b.line, w, norm(b.text):sub(1, 100))
          break
        end
      end
    end
  end
  return out
end


local function claim_docs()
  local docs = { ["README.md"] = luasrc.read("README.md") }
  local p = assert(io.popen("ls docs/*.md"))
  for path in p:lines() do
    if path ~= "docs/safety.md" and path ~= "docs/performance.md" then docs[path] = luasrc.read(path) end
  end
  p:close()
  return docs
end

describe("docs/safety.md, the safety claims and their attacks", function()
  describe("the checker (on made-up documents)", function()
    local spec_src = 'describe("a group", function()\n  it("does a thing", function() end)\n'
      .. '  it("is built per " .. kind, function() end)\nend)\n'
    local function read(path) return path == "spec/x_spec.lua" and spec_src or nil end
    local TABLE = table.concat({
      "## `one`",
      'Claim: README.md "S": "never sent twice"',
      '- Attack: `spec/x_spec.lua` describe "a group" it "does a thing" it "is built per ..." -- how',
    }, "\n")
    local README = "# T\n\n<!-- safety: one -->\nA call is never\nsent twice.\n"

    it("passes a table whose claim is marked, quoted and attacked by names that exist", function()
      assert.same({}, problems(TABLE, { ["README.md"] = README }, read))
    end)

    it("takes a marker before a table for the whole table", function()
      local readme = "# T\n\n<!-- safety: one -->\n| a | b |\n|---|---|\n| x | never sent twice |\n\nAfter.\n"
      assert.same({}, problems(TABLE, { ["README.md"] = readme }, read))
    end)

    it("fails a marked claim without an entry", function()
      local p = problems(TABLE, { ["README.md"] = README .. "\n<!-- safety: two -->\nAnother claim.\n" }, read)
      assert.equal(1, #p)
      assert.matches("two has no entry", p[1], 1, true)
    end)

    it("fails an entry without its marker, and a quote that is not in the marked block", function()
      local p = problems(TABLE, { ["README.md"] = "# T\n\nA call is never sent twice.\n" }, read)
      assert.equal(1, #p)
      assert.matches("no <!-- safety: one --> marker", p[1], 1, true)
      p = problems(TABLE, { ["README.md"] = "<!-- safety: one -->\nA call is sent.\n\nnever sent twice\n" }, read)
      assert.equal(1, #p)
      assert.matches("quote is not in the block", p[1], 1, true)
    end)

    it("fails a spec file or a name that does not exist", function()
      local t = TABLE:gsub('it "does a thing"', 'it "does another thing"')
      local p = problems(t, { ["README.md"] = README }, read)
      assert.equal(1, #p)
      assert.matches('has no it "does another thing"', p[1], 1, true)
      p = problems(TABLE:gsub("x_spec", "y_spec"), { ["README.md"] = README }, read)
      assert.equal(1, #p)
      assert.matches("spec/y_spec.lua does not exist", p[1], 1, true)
      p = problems(TABLE:gsub('it "is built per %.%.%."', 'it "is made per ..."'), { ["README.md"] = README }, read)
      assert.matches('has no it "is made per ..."', p[1], 1, true)
    end)

    it("fails an attack that names no it or describe", function()
      local p = problems(TABLE:gsub(' describe "a group" it "does a thing" it "is built per %.%.%."', ""), { ["README.md"] = README }, read)
      assert.equal(1, #p)
      assert.matches("names no it or describe", p[1], 1, true)
    end)

    it("fails an entry that names no attack", function()
      local p = problems('## `one`\nClaim: README.md "S": "never sent twice"\n', { ["README.md"] = README }, read)
      assert.matches("one names no attacking spec", p[1], 1, true)
    end)

    it("finds a README paragraph or bullet that claims without a marker, not code or tables", function()
      local text = "# T\n\n<!-- safety: one -->\n- compared in constant time\n- retried\n  a payment is never resent\n\n"
        .. "```lua\n-- sent once\n```\n| a | exactly once |\n\nPlain text.\n"
      local u = unmarked_claims(text)
      assert.equal(1, #u)
      assert.matches("never resent", u[1], 1, true)
    end)
  end)

  it("lists every marked claim of README.md and docs/*.md, each attacked by specs and names that exist", function()
    local table_text = assert(luasrc.read("docs/safety.md", true), "docs/safety.md is missing")
    local n = #entries_of(table_text)
    assert.is_true(n >= 40, "entries found: " .. n)
    local p = problems(table_text, claim_docs(), function(path)
      if not path:match("^spec/[%w_/]+%.lua$") then return nil end
      return luasrc.read(path, true)
    end)
    assert(#p == 0, #p .. " problems in docs/safety.md:\n  " .. table.concat(p, "\n  "))
  end)

  it("finds no README paragraph that makes a safety claim without a marker (and so an entry)", function()
    local u = unmarked_claims(luasrc.read("README.md"))
    assert(#u == 0, #u .. " README blocks read as safety claims but carry no <!-- safety: id --> marker:\n  "
      .. table.concat(u, "\n  "))
  end)
end)
