// lru-cache's get() and set() take an options object and, given none, allocate an empty one per
// call (`get(k, o = {})`): on the per-event paths that is an allocation per packet. Those calls pass
// this one instead. lru-cache writes only its `status` field into it, which stays undefined unless
// something subscribes to lru-cache's diagnostics channel (nothing in the agent does).
export const LRU_OPTS = {};
