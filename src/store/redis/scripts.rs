//! The Lua scripts. Each touches keys of one hash slot only (all KEYS share a tag).

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the scripts.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n)
  return string.format('%.0f', n)
end
local function zrem_many(key, ids)
  for i = 1, #ids, 1000 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
-- Removes entries scored <= cutoff from `expiry` and from its companion `order` (if any).
local function prune(order, expiry, cutoff)
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', fmt(cutoff))
  if #dead > 0 then
    zrem_many(expiry, dead)
    if order then zrem_many(order, dead) end
  end
  return dead
end
-- Expires `expiry` and the companion keys with the largest score it holds; deletes them when empty.
local function settle(expiry, companion)
  local top = redis.call('ZRANGE', expiry, -1, -1, 'WITHSCORES')
  if #top == 0 then
    if companion then redis.call('DEL', expiry, companion) else redis.call('DEL', expiry) end
    return
  end
  local at = math.max(1, tonumber(top[2]))
  redis.call('PEXPIREAT', expiry, fmt(at))
  if companion then redis.call('PEXPIREAT', companion, fmt(at)) end
end
-- Moves `id` (scored `score` in the expiry index) to the pending-removal set.
local function retire(si, se, sg, id, score)
  redis.call('ZADD', sg, score, id)
  redis.call('ZREM', si, id)
  redis.call('ZREM', se, id)
end
local function token_ids(fam)
  local ids = {}
  for _, f in ipairs(redis.call('HKEYS', fam)) do
    if string.sub(f, 1, 2) == 't:' then table.insert(ids, string.sub(f, 3)) end
  end
  return ids
end
local function parse_token(v)
  local i, e, u = string.match(v, '^(%-?%d+)|(%-?%d+)|(%-?%d*)$')
  return i, e, u
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Session index: limit check, eviction and insertion.
/// KEYS si se sg; ARGV id created expires max policy. Returns {status, evicted, pending}.
pub(super) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local id, created, expires = ARGV[1], ARGV[2], ARGV[3]
local max, policy = tonumber(ARGV[4]), ARGV[5]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local evicted = {}
if max > 0 then
  local live = redis.call('ZRANGEBYSCORE', se, '(' .. created, '+inf', 'WITHSCORES')
  local count = #live / 2
  if count >= max then
    if policy == 'reject' then
      settle(sg)
      return {0, {}, redis.call('ZRANGE', sg, 0, -1)}
    end
    local score = {}
    for i = 1, #live, 2 do score[live[i]] = live[i + 1] end
    local excess = count + 1 - max
    for _, m in ipairs(redis.call('ZRANGE', si, 0, -1)) do
      if #evicted >= excess then break end
      if score[m] then table.insert(evicted, m) end
    end
    for _, m in ipairs(evicted) do retire(si, se, sg, m, score[m]) end
  end
end
redis.call('ZADD', si, created, id)
redis.call('ZADD', se, expires, id)
settle(se, si)
settle(sg)
return {1, evicted, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: swap `old` for `new` if `old` is indexed and live at ARGV[5].
/// KEYS si se sg; ARGV old new created expires now. `new` may be '' (remove only).
/// Returns {status, pending}.
pub(super) static INDEX_SWAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local old, new = ARGV[1], ARGV[2]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local score = redis.call('ZSCORE', se, old)
local status = 0
if score and tonumber(score) > tonumber(ARGV[5]) then
  retire(si, se, sg, old, score)
  if new ~= '' then
    redis.call('ZADD', si, ARGV[3], new)
    redis.call('ZADD', se, ARGV[4], new)
  end
  status = 1
end
settle(se, si)
settle(sg)
return {status, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: retire one ID (ARGV[1]) or all ('') for deletion.
/// KEYS si se sg. Returns {retired by this call, all pending (including those)}.
pub(super) static INDEX_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
prune(si, se, now)
prune(nil, sg, now)
local retired = {}
if ARGV[1] == '' then
  local all = redis.call('ZRANGE', se, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    redis.call('ZADD', sg, all[i + 1], all[i])
    table.insert(retired, all[i])
  end
  redis.call('DEL', si, se)
else
  local score = redis.call('ZSCORE', se, ARGV[1])
  if score then
    retire(si, se, sg, ARGV[1], score)
    table.insert(retired, ARGV[1])
  end
  settle(se, si)
end
settle(sg)
return {retired, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session index: raise the expiry bound of a live entry. KEYS se si; ARGV id expires now.
pub(super) static INDEX_TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) <= tonumber(ARGV[3]) then return 0 end
if tonumber(ARGV[2]) > tonumber(score) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  settle(KEYS[1], KEYS[2])
end
return 1
"#,
    )
});

/// Session index: move entries that expired by ARGV[1] to the pending set.
/// KEYS si se sg. Returns {count, pending}.
pub(super) static INDEX_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local si, se, sg = KEYS[1], KEYS[2], KEYS[3]
local dead = redis.call('ZRANGEBYSCORE', se, '-inf', ARGV[1], 'WITHSCORES')
for i = 1, #dead, 2 do retire(si, se, sg, dead[i], dead[i + 1]) end
prune(nil, sg, now_ms())
settle(se, si)
settle(sg)
return {#dead / 2, redis.call('ZRANGE', sg, 0, -1)}
"#,
    )
});

/// Session: sliding renewal of the session and its data hash. KEYS session data;
/// ARGV last_seen expires.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local l, e, a, rest = string.match(v, '^(%-?%d+)|(%-?%d+)|(%-?%d+)|(.*)$')
if not a then return redis.error_reply('keycard: malformed session record') end
if tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local ne = ARGV[2]
if tonumber(ne) > tonumber(a) then ne = a end
local at = fmt(math.max(1, tonumber(ne)))
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ne .. '|' .. a .. '|' .. rest, 'PXAT', at)
redis.call('PEXPIREAT', KEYS[2], at)
return 1
"#,
    )
});

/// Session: delete the session and its data hash. KEYS session data. Returns whether the
/// session key existed.
pub(super) static SESSION_DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return n
"#,
    )
});

/// Applying a data patch (see `DataPatch`) to the fields of a hash that start with a prefix.
const DATA_PRELUDE: &str = r#"
-- Applies the patch in ARGV[first + 3 ..] (triples key, 's'|'r', value) to the fields
-- `prefix .. key` of `hash`, under the limits ARGV[first .. first + 2] (key, value, total bytes;
-- the total counts keys without the prefix). Returns 1, or -1 (writing nothing) over a limit.
local function apply_patch(hash, prefix, first)
  local maxk, maxv, maxt = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2])
  local plen = #prefix
  local total = 0
  local cur = redis.call('HGETALL', hash)
  local len = {}
  for i = 1, #cur, 2 do
    local f = cur[i]
    if plen == 0 or string.sub(f, 1, plen) == prefix then
      len[f] = #cur[i + 1]
      total = total + #f - plen + #cur[i + 1]
    end
  end
  for i = first + 3, #ARGV, 3 do
    local k, op, val = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if #k > maxk then return -1 end
    local f = prefix .. k
    if len[f] then total = total - #k - len[f] end
    len[f] = nil
    if op == 's' then
      if #val > maxv then return -1 end
      total = total + #k + #val
      len[f] = #val
    end
  end
  if total > maxt then return -1 end
  for i = first + 3, #ARGV, 3 do
    if ARGV[i + 1] == 's' then
      redis.call('HSET', hash, prefix .. ARGV[i], ARGV[i + 2])
    else
      redis.call('HDEL', hash, prefix .. ARGV[i])
    end
  end
  return 1
end
"#;

fn data_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{DATA_PRELUDE}{body}"))
}

/// Session: create with data. KEYS session data; ARGV value pxat field value field value ...
/// Returns 1, or 0 when the session key exists (nothing written).
pub(super) static SESSION_PUT_WITH_DATA: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then return 0 end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
"#,
    )
});

/// Session data: apply a patch if the session is live at ARGV[1]. KEYS session data;
/// ARGV now max_key max_value max_total (key op value)... Returns 1, 0 (absent or expired) or
/// -1 (over a limit; nothing written).
pub(super) static SESSION_DATA_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    data_script(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e = string.match(v, '^%-?%d+|(%-?%d+)|%-?%d+|')
if not e then return redis.error_reply('keycard: malformed session record') end
if tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local r = apply_patch(KEYS[2], '', 2)
if r == 1 then redis.call('PEXPIREAT', KEYS[2], fmt(math.max(1, tonumber(e)))) end
return r
"#,
    )
});

/// Family data (fields `d:<key>` of the family hash) if the head is live at ARGV[1]. KEYS fam.
/// Returns {key, value, ...} (empty when none or not live).
pub(super) static FAMILY_DATA: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return {} end
local t = redis.call('HGET', KEYS[1], 't:' .. h)
if not t then return {} end
local _, e = parse_token(t)
if (not e) or tonumber(e) <= tonumber(ARGV[1]) then return {} end
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'd:' then
    table.insert(out, string.sub(all[i], 3))
    table.insert(out, all[i + 1])
  end
end
return out
"#,
    )
});

/// Family data: apply a patch if the head is live at ARGV[1]. KEYS fam; ARGV as
/// [`SESSION_DATA_UPDATE`]. Returns 1, 0 (not live) or -1 (over a limit; nothing written).
pub(super) static FAMILY_DATA_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    data_script(
        r#"
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return 0 end
local t = redis.call('HGET', KEYS[1], 't:' .. h)
if not t then return 0 end
local _, e = parse_token(t)
if (not e) or tonumber(e) <= tonumber(ARGV[1]) then return 0 end
return apply_patch(KEYS[1], 'd:', 2)
"#,
    )
});

/// Family: create. KEYS fam; ARGV subject family data family_expires id token own_idle (the
/// family's own idle timeout in milliseconds, kept as field `i` for the rotation script, or '').
pub(super) static FAMILY_INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'f', ARGV[2], 'd', ARGV[3], 'x', ARGV[4],
  'h', ARGV[5], 't:' .. ARGV[5], ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'i', ARGV[7]) end
redis.call('PEXPIREAT', KEYS[1], fmt(math.max(1, tonumber(ARGV[4]))))
return 1
"#,
    )
});

/// Subject's family index: add. KEYS rf rx; ARGV family created family_expires.
pub(super) static FAMILY_INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
prune(KEYS[1], KEYS[2], now_ms())
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
settle(KEYS[2], KEYS[1])
return 1
"#,
    )
});

/// Family: rotation, mirroring `MemoryStore` (and `RefreshRecord::successor`: the family's own
/// idle timeout `i`, when shorter, replaces `idle`). KEYS fam;
/// ARGV presented next now idle grace next_collides.
/// Returns {'invalid'} | {'conflict'} | {'reused', subject, family, ids...} |
/// {'rotated', subject, family, data, presented_token, removed_head}.
pub(super) static FAMILY_ROTATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local fam = KEYS[1]
local presented, nxt = ARGV[1], ARGV[2]
local now, idle, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HGET', fam, 't:' .. presented)
if not cur then return {'invalid'} end
local x = tonumber(redis.call('HGET', fam, 'x'))
if (not x) or x <= now then return {'invalid'} end
local issued, exp, used = parse_token(cur)
if not issued then return redis.error_reply('keycard: malformed refresh token record') end
local head = redis.call('HGET', fam, 'h')
local removed = ''
if used == '' then
  if tonumber(exp) <= now then return {'invalid'} end
else
  local pred = redis.call('HGET', fam, 'p')
  local head_unused = false
  if head then
    local hv = redis.call('HGET', fam, 't:' .. head)
    if hv then
      local _, he, hu = parse_token(hv)
      head_unused = hu == '' and tonumber(he) > now
    end
  end
  local in_grace = grace > 0 and tonumber(used) + grace > now and pred == presented and head_unused
  if not in_grace then
    local reply = {'reused', redis.call('HGET', fam, 's'), redis.call('HGET', fam, 'f')}
    for _, id in ipairs(token_ids(fam)) do table.insert(reply, id) end
    redis.call('DEL', fam)
    return reply
  end
  if ARGV[6] == '1' then return {'conflict'} end
  if head then
    redis.call('HDEL', fam, 't:' .. head)
    removed = head
  end
end
if ARGV[6] == '1' then return {'conflict'} end
if used == '' then
  cur = issued .. '|' .. exp .. '|' .. ARGV[3]
  redis.call('HSET', fam, 't:' .. presented, cur)
end
local own = tonumber(redis.call('HGET', fam, 'i'))
if own and own < idle then idle = own end
local nexp = math.min(now + idle, x)
redis.call('HSET', fam, 't:' .. nxt, ARGV[3] .. '|' .. fmt(nexp) .. '|', 'h', nxt, 'p', presented)
return {'rotated', redis.call('HGET', fam, 's'), redis.call('HGET', fam, 'f'),
  redis.call('HGET', fam, 'd'), cur, removed}
"#,
    )
});

/// Family: the head. KEYS fam. Returns {subject, family, data, head, head_token} or {}.
pub(super) static FAMILY_HEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('HMGET', KEYS[1], 's', 'f', 'd', 'h')
if not v[4] then return {} end
local t = redis.call('HGET', KEYS[1], 't:' .. v[4])
if not t then return {} end
return {v[1], v[2], v[3], v[4], t}
"#,
    )
});

/// Family: delete if it belongs to ARGV[1]. KEYS fam. Returns the token IDs or nil.
pub(super) static FAMILY_DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HGET', KEYS[1], 's') ~= ARGV[1] then return false end
local ids = token_ids(KEYS[1])
redis.call('DEL', KEYS[1])
return ids
"#,
    )
});

/// Family: delete if its head is missing or expired at ARGV[1]. KEYS fam.
/// Returns {subject, family, ids...} or nil.
pub(super) static FAMILY_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('HMGET', KEYS[1], 's', 'f', 'h')
if not v[1] then return false end
if v[3] then
  local t = redis.call('HGET', KEYS[1], 't:' .. v[3])
  if t then
    local _, e = parse_token(t)
    if e and tonumber(e) > tonumber(ARGV[1]) then return false end
  end
end
local reply = {v[1], v[2] or ''}
for _, id in ipairs(token_ids(KEYS[1])) do table.insert(reply, id) end
redis.call('DEL', KEYS[1])
return reply
"#,
    )
});

/// Denylist: add (keeping the later `until`) and publish. KEYS jti; ARGV jti until channel msg.
pub(super) static REVOKE_JTI: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms()))
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
settle(KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});

/// Epoch: raise (never lower) and publish. KEYS epoch; ARGV subject epoch channel msg.
pub(super) static REVOKE_EPOCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(ARGV[2]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});

/// Revocation check. KEYS jti epoch; ARGV jti subject issued_at.
pub(super) static IS_REVOKED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local e = redis.call('HGET', KEYS[2], ARGV[2])
if e and tonumber(ARGV[3]) < tonumber(e) then return 1 end
return 0
"#,
    )
});

/// Snapshot of revocations in force at ARGV[1]. KEYS jti epoch. Returns {denylist, epochs}.
pub(super) static LOAD_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
return {redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES'),
  redis.call('HGETALL', KEYS[2])}
"#,
    )
});
