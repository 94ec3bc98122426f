"""Every Lua script the system runs in Redis. Each one is a single atomic step.

The life of a key, in the keys of ``shared.names``:

1. the generator adds it to ``test:pending`` (score: its TTL deadline) and writes ``gen-key:<n>``;
2. one consumer *claims* it: from an expiry event (``CLAIM``) or, when no event was heard, from
   the sweeper (``SWEEP``). Claiming writes ``dedup:<key>`` with the test's dedup window, moves
   the key from ``test:pending`` to ``test:inflight`` with a lease, and returns it for publishing;
3. the pull worker that receives it from JetStream *counts* it (``COUNT``): the first delivery
   records it in ``test:consumed`` and bumps the counters, any later delivery only counts as a
   duplicate; either way it leaves ``test:inflight``;
4. a key whose lease runs out while still in flight (its claimer died, its message was lost with
   a NATS restart) is claimed again by the sweeper and republished under the same message id.

Keys computed inside the scripts (``dedup:`` names) keep this single-instance only.
"""

from typing import Final

_TEST_AND_CLOCK: Final = """
local test = redis.call('HMGET', KEYS[1], 'id', 'dedup_window')
local test_id, window = test[1], tonumber(test[2])
if not test_id or not window then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: test:current, test:pending, test:inflight. ARGV: lease ms, key...
#: Returns {test_id, key, deadline, key, deadline, ...} for the keys this caller won.
CLAIM: Final = (
    _TEST_AND_CLOCK
    + """
local lease_end = now + tonumber(ARGV[1])
local won = {test_id}
for i = 2, #ARGV do
  local key = ARGV[i]
  local deadline = redis.call('ZSCORE', KEYS[2], key)
  if deadline and redis.call('SET', 'dedup:' .. key, test_id, 'NX', 'PX', window) then
    redis.call('ZREM', KEYS[2], key)
    redis.call('ZADD', KEYS[3], lease_end, key .. '|' .. deadline)
    won[#won + 1] = key
    won[#won + 1] = deadline
  end
end
return won
"""
)

#: KEYS: test:current, test:pending, test:inflight, metrics:recovered.
#: ARGV: lease ms, grace ms, limit.
#: Claims keys past their deadline (plus grace) whose expiry nobody claimed, and keys whose lease
#: ran out. Returns {test_id, key, deadline, ...} like CLAIM.
SWEEP: Final = (
    _TEST_AND_CLOCK
    + """
local lease_end = now + tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local claimed = {test_id}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]),
                       'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local key, deadline = due[i], due[i + 1]
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('ZREM', KEYS[2], key)
    redis.call('SET', 'dedup:' .. key, test_id, 'PX', window)
    redis.call('ZADD', KEYS[3], lease_end, key .. '|' .. deadline)
    claimed[#claimed + 1] = key
    claimed[#claimed + 1] = deadline
  else
    -- still alive (written late): look again when it is really due
    redis.call('ZADD', KEYS[2], now + ttl, key)
  end
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(stale) do
  redis.call('ZADD', KEYS[3], lease_end, member)
  local bar = string.find(member, '|', 1, true)
  claimed[#claimed + 1] = string.sub(member, 1, bar - 1)
  claimed[#claimed + 1] = string.sub(member, bar + 1)
end
if #claimed > 1 then redis.call('INCRBY', KEYS[4], (#claimed - 1) / 2) end
return claimed
"""
)

#: KEYS: test:inflight. ARGV: member... — ends the leases of keys a publisher could not publish,
#: so that any consumer's sweeper claims them at once.
RELEASE: Final = """
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[i]) end
return #ARGV
"""

#: KEYS: test:inflight. Ends every lease (after a NATS restart lost the queued messages).
RELEASE_ALL: Final = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], 0, member) end
return #members
"""

#: KEYS: test:current, test:consumed, test:inflight, test:latency, metrics:consumed,
#:       metrics:consumer:<id>, metrics:consumers, metrics:duplicates.
#: ARGV: test id, consumer id, then (key, deadline, delay ms, latency bucket) per message.
#: Returns {counted, duplicates}, or {-1, 0} when the messages belong to an earlier test.
COUNT: Final = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {-1, 0} end
local consumer = ARGV[2]
local counted, duplicates = 0, 0
for i = 3, #ARGV, 4 do
  local key = ARGV[i]
  if redis.call('HSETNX', KEYS[2], key, consumer .. ' ' .. ARGV[i + 2]) == 1 then
    counted = counted + 1
    redis.call('HINCRBY', KEYS[4], ARGV[i + 3], 1)
  else
    duplicates = duplicates + 1
  end
  redis.call('ZREM', KEYS[3], key .. '|' .. ARGV[i + 1])
end
if counted > 0 then
  redis.call('INCRBY', KEYS[5], counted)
  redis.call('INCRBY', KEYS[6], counted)
  redis.call('SADD', KEYS[7], consumer)
end
if duplicates > 0 then redis.call('INCRBY', KEYS[8], duplicates) end
return {counted, duplicates}
"""

#: KEYS: test:current, test:dead_letters, metrics:dead_letters, test:inflight.
#: ARGV: test id ('' when unknown), key, deadline. Records a message given up on.
DEAD_LETTER: Final = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[4], ARGV[2] .. '|' .. ARGV[3])
if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then
  redis.call('INCR', KEYS[3])
  return 1
end
return 0
"""
