"""The Lua scripts of `RedisStore`: each operation on a session is one of them, which Redis
runs atomically (see `sessionguard.stores.redis` for the layout of keys they work on)."""

from __future__ import annotations

__all__ = [
    "DELETE_SCRIPT",
    "LOAD_SCRIPT",
    "OWNER_OF_SCRIPT",
    "PURGE_IF_EXPIRED_SCRIPT",
    "SAVE_SCRIPT",
    "SESSIONS_OF_SCRIPT",
    "TOUCH_SCRIPT",
]

# Prepended to every script: whether deadline `e` (Unix seconds) has passed by the server's
# clock. TIME is allowed before writes because scripts replicate their effects (Redis 5+).
_EXPIRED = """
local function expired(e)
  local now = redis.call('TIME')
  return tonumber(e) <= tonumber(now[1]) + tonumber(now[2]) / 1000000
end
"""

# Prepended to the scripts that change owners. A record's hash names its owner's set in
# `u`; the set holds the record's key name.
_OWNERS = """
local function disown(name)
  local set = redis.call('HGET', name, 'u')
  if set then redis.call('SREM', set, name) end
end
-- Drops the names in `set` whose record is gone (expired by its TTL) or owned by another.
local function sweep(set)
  local kept = {}
  for _, name in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('HGET', name, 'u') == set then
      table.insert(kept, name)
    else
      redis.call('SREM', set, name)
    end
  end
  return kept
end
"""

# KEYS[1] = session key. Returns {payload, version, deadline} or nil.
LOAD_SCRIPT = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'p', 'v', 'e')
if not (fields[1] and fields[2] and fields[3]) or expired(fields[3]) then return nil end
return fields
"""
)

# ARGV = expected version ('' = unconditional), payload, deadline in unix ms, deadline,
# what to do with the owner ('keep', 'none' or 'own'), the owner (for 'own'), the write's
# token, and KEYS[2] = the owner's set (for 'own'). Returns the new version, or 0 on a
# compare-and-swap miss.
#
# The token makes a save that the client sends again (its reply was lost to a timeout or
# a dropped connection, and redis-py retried) count once: if the record still holds the
# token, that write already happened and its version is the answer. Without it, the
# retried compare-and-swap would miss against its own write, and the caller would apply
# its change a second time.
SAVE_SCRIPT = (
    _EXPIRED
    + _OWNERS
    + """
if redis.call('HGET', KEYS[1], 't') == ARGV[7] then
  return tonumber(redis.call('HGET', KEYS[1], 'v'))
end
local current = redis.call('HGET', KEYS[1], 'v')
local e = redis.call('HGET', KEYS[1], 'e')
if current and e and expired(e) then
  disown(KEYS[1])
  redis.call('DEL', KEYS[1])  -- its TTL was lost; it is not live, so start afresh
  current = false
end
if ARGV[1] ~= '' then
  if ARGV[1] == '0' then
    if current then return 0 end
  elseif current ~= ARGV[1] then
    return 0
  end
end
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'e', ARGV[4], 't', ARGV[7])
if ARGV[5] == 'own' then
  if redis.call('HGET', KEYS[1], 'u') ~= KEYS[2] then disown(KEYS[1]) end
  redis.call('HSET', KEYS[1], 'o', ARGV[6], 'u', KEYS[2])
  redis.call('SADD', KEYS[2], KEYS[1])
elseif ARGV[5] == 'none' then
  disown(KEYS[1])
  redis.call('HDEL', KEYS[1], 'o', 'u')
end
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return version
"""
)

# ARGV = deadline in unix ms, deadline, expected version ('' = any). Returns 1 if touched.
TOUCH_SCRIPT = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'v', 'e')
local e = fields[2]
if not e or expired(e) then return 0 end
if ARGV[3] ~= '' and fields[1] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
return redis.call('PEXPIREAT', KEYS[1], ARGV[1])
"""
)

# ARGV = expected version ('' = any: delete whatever is there). Returns 1 if deleted.
DELETE_SCRIPT = (
    _EXPIRED
    + _OWNERS
    + """
if ARGV[1] ~= '' then
  local fields = redis.call('HMGET', KEYS[1], 'v', 'e')
  if fields[1] ~= ARGV[1] or not fields[2] or expired(fields[2]) then return 0 end
end
disown(KEYS[1])
return redis.call('DEL', KEYS[1])
"""
)

# KEYS[1] = a user's set. Returns the key names of the user's live sessions, and drops
# the names whose record is gone, so the set does not only grow.
SESSIONS_OF_SCRIPT = (
    _EXPIRED
    + _OWNERS
    + """
local live = {}
for _, name in ipairs(sweep(KEYS[1])) do
  local e = redis.call('HGET', name, 'e')
  if e and not expired(e) then table.insert(live, name) end
end
return live
"""
)

# Returns the owner of the live session KEYS[1], or nil.
OWNER_OF_SCRIPT = (
    _EXPIRED
    + """
local fields = redis.call('HMGET', KEYS[1], 'o', 'v', 'e')
if not (fields[2] and fields[3]) or expired(fields[3]) then return nil end
return fields[1]
"""
)

# Removes the key if it is a session hash past its deadline (its TTL was lost), with its
# name in its owner's set; if the key is a user's set (its name starts with ARGV[1]),
# drops the names of records that are gone. Returns the number of sessions removed.
PURGE_IF_EXPIRED_SCRIPT = (
    _EXPIRED
    + _OWNERS
    + """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'set' and string.sub(KEYS[1], 1, #ARGV[1]) == ARGV[1] then
  sweep(KEYS[1])
  return 0
end
if kind ~= 'hash' then return 0 end
local e = redis.call('HGET', KEYS[1], 'e')
if e and redis.call('HEXISTS', KEYS[1], 'p') == 1 and expired(e) then
  disown(KEYS[1])
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
