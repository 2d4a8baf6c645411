"""The Lua scripts :class:`~immortus.queues.sidekiq.SidekiqStrategy` runs inside Sidekiq's Redis."""

from __future__ import annotations

from typing import Final

__all__ = ["LAYOUT_SCRIPT", "SCAN_SCRIPT"]

# ARGV[1] = key prefix, ARGV[2] = the oldest heartbeat (epoch seconds) of a live process.
# Returns the work hashes of live processes (whose heartbeat key exists, as Sidekiq::WorkSet
# checks, and whose last beat is recent: a killed process's key lives on for a minute) and the
# queue lists, in name order.
LAYOUT_SCRIPT: Final = """
local prefix, oldest, work, queues = ARGV[1], tonumber(ARGV[2]), {}, {}
for _, identity in ipairs(redis.call('SMEMBERS', prefix .. 'processes')) do
  local beat = tonumber(redis.call('HGET', prefix .. identity, 'beat'))
  if beat and beat >= oldest then
    table.insert(work, prefix .. identity .. ':workers')
    table.insert(work, prefix .. identity .. ':work')
  end
end
local names = redis.call('SMEMBERS', prefix .. 'queues')
table.sort(names)
for _, name in ipairs(names) do table.insert(queues, prefix .. 'queue:' .. name) end
return {work, queues}
"""

# Walks KEYS from key ARGV[1] at offset ARGV[2], examining at most ARGV[3] payloads; ARGV[4] ids
# follow, then the substrings that preselect candidates. Hashes are read whole (work hashes:
# one entry per busy thread), lists from the left (pushes there, pops on the right), sorted
# sets from the highest score (removals at the low end): normal traffic never makes it skip an
# entry. Returns {next key, next offset, {{key index, id, payload, score, list index}, ...}}.
SCAN_SCRIPT: Final = """
local index, offset, budget, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local wanted, needles, found, missing = {}, {}, {}, n
for i = 5, 4 + n do wanted[ARGV[i]] = true end
for i = 5 + n, #ARGV do table.insert(needles, ARGV[i]) end

local function decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == 'table' then return value end
  return nil
end

local function ids_of(job)
  local ids = {}
  if job == nil then return ids end
  if type(job.jid) == 'string' and wanted[job.jid] then table.insert(ids, job.jid) end
  local args = job.args
  if type(args) == 'table' and type(args[1]) == 'table' then
    local id = args[1].job_id
    if type(id) == 'string' and wanted[id] and id ~= job.jid then table.insert(ids, id) end
  end
  return ids
end

local function check(text, score, position, wrapped)
  local hit = false
  for _, needle in ipairs(needles) do
    if string.find(text, needle, 1, true) then hit = true break end
  end
  if not hit then return end
  local job = decode(text)
  if wrapped and job ~= nil then
    job = type(job.payload) == 'string' and decode(job.payload) or job.payload
    if type(job) ~= 'table' then job = nil end
  end
  for _, id in ipairs(ids_of(job)) do
    table.insert(found, {index, id, text, score, position})
    wanted[id], missing = nil, missing - 1
  end
end

while index <= #KEYS and budget > 0 and missing > 0 do
  local key = KEYS[index]
  local kind = redis.call('TYPE', key)['ok']
  local items, step = {}, 1
  if kind == 'hash' then
    items = redis.call('HVALS', key)
    for _, text in ipairs(items) do check(text, '', 0, true) end
  elseif kind == 'list' then
    items = redis.call('LRANGE', key, offset, offset + budget - 1)
    for i = 1, #items do
      check(items[i], '', offset + i - 1, false)
      if missing == 0 then break end
    end
  elseif kind == 'zset' then
    items, step = redis.call('ZREVRANGE', key, offset, offset + budget - 1, 'WITHSCORES'), 2
    for i = 1, #items, 2 do
      check(items[i], items[i + 1], 0, false)
      if missing == 0 then break end
    end
  end
  local seen = #items / step
  budget = budget - seen
  if (kind == 'list' or kind == 'zset') and budget <= 0 then
    offset = offset + seen
  else
    index, offset = index + 1, 0
  end
end
return {index, offset, found}
"""
