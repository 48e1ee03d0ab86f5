34%  loop.lua:submit
  -- 93%  loop.lua:147
20%  http.lua:request
  -- 25%  http.lua:507
  -- 14%  http.lua:561
  -- 11%  http.lua:603
  --  7%  http.lua:565
  --  7%  http.lua:528
  --  4%  http.lua:547
  --  4%  http.lua:520
  --  4%  http.lua:602
  --  4%  http.lua:538
  --  4%  http.lua:569
  --  4%  http.lua:514
  --  4%  http.lua:498
  --  4%  http.lua:564
  --  4%  http.lua:540
  --  4%  http.lua:559
16%  loop.lua:collect
  -- 100%  loop.lua:209
 7%  redact.lua:scrub_form_pairs
  -- 70%  redact.lua:252
  -- 10%  redact.lua:269
  -- 10%  redact.lua:271
  -- 10%  redact.lua:270
 7%  loop.lua:resume
  -- 67%  loop.lua:111
  -- 22%  loop.lua:109
  -- 11%  loop.lua:117
 4%  loop.lua:take
  -- 50%  loop.lua:181
  -- 33%  loop.lua:185
  -- 17%  loop.lua:189
