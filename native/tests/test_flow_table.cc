// Flow table: capacity, lookup/insert/delete, expiry, ranking; NF state API.
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "dyssect/flow_hash.h"
#include "dyssect/flow_table.h"
#include "dyssect/nf_state.h"
#include "test.h"

using namespace dyssect;

namespace {
FlowKey Key(uint32_t i) { return MakeFlowKey(0x0A000000 + i, 0x0B000000 + i * 7, i & 0xFFFF, 80, kProtoTcp); }
// A flow hash as one shard of 16 sees them: every flow shares the low 4 bits
// (the original's clustering case; FlowTable::Mix must spread them).
uint32_t H(const FlowKey& k) { return (FlowHashCrc32c(k) & ~15u) | 3u; }
FlowKey UKey(uint32_t k) { return MakeFlowKey(k << 4, 42, 7, 9, kProtoUdp); }
}  // namespace

TEST(flow_table_insert_lookup_full) {
  FlowTable t(1000);
  bool ins;
  for (uint32_t i = 0; i < 1000; i++) {
    FlowEntry* e = t.FindOrInsert(Key(i), H(Key(i)), 5, &ins);
    REQUIRE(e != nullptr);
    CHECK(ins);
    CHECK(e->key == Key(i));
    CHECK_EQ(e->want_offload, 0u);  // new flows local
  }
  CHECK_EQ(t.size(), 1000u);
  // Full: counted failure, existing flows still found.
  CHECK(t.FindOrInsert(Key(5000), H(Key(5000)), 5, &ins) == nullptr);
  CHECK(t.FindOrInsert(Key(5001), H(Key(5001)), 5, &ins) == nullptr);
  CHECK_EQ(t.insert_failures(), 2u);
  for (uint32_t i = 0; i < 1000; i++) {
    FlowEntry* e = t.FindOrInsert(Key(i), H(Key(i)), 6, &ins);
    REQUIRE(e != nullptr);
    CHECK(!ins);
    CHECK(t.Lookup(Key(i), H(Key(i))) == e);
  }
  CHECK(t.Lookup(Key(5000), H(Key(5000))) == nullptr);
  // Same addresses and ports, different protocol: a different flow.
  FlowKey udp = Key(1);
  udp.proto = kProtoUdp;
  CHECK(t.Lookup(udp, H(udp)) == nullptr);
}

TEST(flow_table_random_ops_vs_model) {
  // Random insert/remove against std::unordered_map; backward-shift deletion
  // must keep every remaining key reachable. Keys share low hash bits as
  // flows of one shard do (the original's clustering case).
  FlowTable t(512);
  std::unordered_map<uint32_t, FlowEntry*> model;
  std::mt19937 rng(5);
  bool ins;
  for (int op = 0; op < 200000; op++) {
    const uint32_t k = rng() % 2048;
    const FlowKey key = UKey(k);
    auto it = model.find(k);
    if (rng() % 3 == 0) {
      if (it != model.end()) {
        CHECK(t.Remove(it->second));
        model.erase(it);
      }
    } else {
      FlowEntry* e = t.FindOrInsert(key, H(key), 0, &ins);
      if (it != model.end()) {
        CHECK(e == it->second);
        CHECK(!ins);
      } else if (model.size() < 512) {
        REQUIRE(e != nullptr);
        CHECK(ins);
        model[k] = e;
      } else {
        CHECK(e == nullptr);
      }
    }
    if (op % 20000 == 0) {
      for (auto& kv : model) CHECK(t.Lookup(UKey(kv.first), H(UKey(kv.first))) == kv.second);
    }
  }
  CHECK_EQ(t.size(), model.size());
  for (auto& kv : model) CHECK(t.Lookup(UKey(kv.first), H(UKey(kv.first))) == kv.second);
  // Removing twice is refused.
  if (!model.empty()) {
    FlowEntry* e = model.begin()->second;
    CHECK(t.Remove(e));
    CHECK(!t.Remove(e));
  }
}

TEST(flow_table_expiry_incremental) {
  FlowTable t(100);
  bool ins;
  for (uint32_t i = 0; i < 100; i++) t.FindOrInsert(Key(i), H(Key(i)), /*now=*/i < 50 ? 100 : 900, &ins);
  // Flow 3 is idle but has a packet in flight at an offloading core: kept.
  t.Lookup(Key(3), H(Key(3)))->inflight.store(1);
  std::vector<uint32_t> expired;
  auto cb = [&](FlowEntry* e) { expired.push_back(e->key.src_ip - 0x0A000000); };
  // Budget 10 per call: the sweep is incremental.
  uint32_t total = 0, calls = 0;
  for (; calls < 10; calls++) {
    const uint32_t n = t.ExpireSome(/*now=*/1000, /*idle=*/500, 10, cb);
    CHECK(n <= 10);
    total += n;
  }
  CHECK_EQ(total, 49u);
  CHECK_EQ(t.size(), 51u);
  CHECK_EQ(expired.size(), 49u);
  for (uint32_t x : expired) CHECK(x < 50 && x != 3);
  CHECK(t.Lookup(Key(3), H(Key(3))) != nullptr);
  CHECK(t.Lookup(Key(60), H(Key(60))) != nullptr);
  // Once the in-flight packet is done the flow expires on the next pass.
  t.Lookup(Key(3), H(Key(3)))->inflight.store(0);
  for (int i = 0; i < 10; i++) t.ExpireSome(1000, 500, 10, cb);
  CHECK(t.Lookup(Key(3), H(Key(3))) == nullptr);
  CHECK_EQ(t.expirations(), 50u);
  // Freed entries are reusable: the table can fill up again.
  for (uint32_t i = 1000; i < 1050; i++) CHECK(t.FindOrInsert(Key(i), H(Key(i)), 1000, &ins) != nullptr);
  CHECK(t.FindOrInsert(Key(2000), H(Key(2000)), 1000, &ins) == nullptr);
}

TEST(flow_table_rank_heaviest_up_to_ratio) {
  FlowTable t(16);
  bool ins;
  // Flow i sends (i+1)*100 bytes; total 100*(1+...+10) = 5500.
  for (uint32_t i = 0; i < 10; i++)
    t.Counters(t.FindOrInsert(Key(i), H(Key(i)), 0, &ins)).win_bytes = (i + 1) * 100;
  // ratio 0.35 -> 1925 bytes: flows 9 (1000) and 8 (900) = 1900 <= 1925; + 800 exceeds.
  CHECK_EQ(t.Rank(0.35, true), 2u);
  for (uint32_t i = 0; i < 10; i++) CHECK_EQ(t.Lookup(Key(i), H(Key(i)))->want_offload, i >= 8 ? 1u : 0u);
  CHECK_EQ(t.Lookup(Key(9), H(Key(9)))->last_win_bytes, 1000u);
  CHECK_EQ(t.Counters(t.Lookup(Key(9), H(Key(9)))).win_bytes, 0u);
  // r changed without a new window: re-mark on the same bytes.
  CHECK_EQ(t.Rank(0.0, false), 0u);
  CHECK_EQ(t.Lookup(Key(9), H(Key(9)))->want_offload, 0u);
  CHECK_EQ(t.Rank(1.0, false), 10u);
  // New window with no traffic: nothing offloaded (idle flows are not ranked).
  CHECK_EQ(t.Rank(1.0, true), 0u);
  // One flow larger than r_s alone: not offloaded.
  t.Counters(t.Lookup(Key(0), H(Key(0)))).win_bytes = 900;
  t.Counters(t.Lookup(Key(1), H(Key(1)))).win_bytes = 100;
  CHECK_EQ(t.Rank(0.5, true), 0u);
  CHECK_EQ(t.Rank(0.95, false), 1u);
  CHECK_EQ(t.Lookup(Key(0), H(Key(0)))->want_offload, 1u);
}

// The per-packet counters live apart from the entries: an entry reused by a
// new flow starts with zero counters, and ranking reads the counters of the
// right entry.
TEST(flow_table_counters_follow_their_entry) {
  FlowTable t(4);
  bool ins;
  FlowEntry* a = t.FindOrInsert(Key(1), H(Key(1)), 0, &ins);
  FlowEntry* b = t.FindOrInsert(Key(2), H(Key(2)), 0, &ins);
  t.Counters(a).win_bytes = 700;
  t.Counters(a).local_batch = 9;
  t.Counters(b).win_bytes = 300;
  CHECK(&t.Counters(a) != &t.Counters(b));
  CHECK(t.Remove(a));
  FlowEntry* c = t.FindOrInsert(Key(3), H(Key(3)), 0, &ins);
  CHECK(ins);
  CHECK(c == a);  // the freed entry is reused
  CHECK_EQ(t.Counters(c).win_bytes, 0u);
  CHECK_EQ(t.Counters(c).local_batch, 0u);
  t.Counters(c).win_bytes = 100;
  CHECK_EQ(t.Rank(0.8, true), 1u);  // b (300 of 400) fits 0.8; with c (400) it would not
  CHECK_EQ(b->want_offload, 1u);
  CHECK_EQ(c->want_offload, 0u);
  CHECK_EQ(b->last_win_bytes, 300u);
  CHECK_EQ(c->last_win_bytes, 100u);
  CHECK_EQ(t.Counters(b).win_bytes, 0u);
}

namespace {
int g_live = 0;
struct Tracked {
  explicit Tracked(int v) : value(v) { g_live++; }
  ~Tracked() { g_live--; }
  int value;
  char pad[40];
};
int g_hook_calls = 0;
}  // namespace

TEST(nf_state_api_contract) {
  NfRegistry reg;
  NfState<Tracked> a, a2;
  NfState<uint64_t> b;
  REQUIRE(a.Init(&reg, "nf_a", 4));
  REQUIRE(b.Init(&reg, "nf_b", 100));
  REQUIRE(a2.Init(&reg, "nf_a", 4));  // same chain position on another core: same slot
  CHECK_EQ(a.handle(), a2.handle());
  CHECK(a.handle() != b.handle());
  reg.SetReleaseHook(a.handle(), [](void*, void*) { g_hook_calls++; }, nullptr);
  FlowTable t(8);
  bool ins;
  FlowEntry* f[6];
  for (uint32_t i = 0; i < 6; i++) f[i] = t.FindOrInsert(Key(i), H(Key(i)), 0, &ins);
  CHECK(a.Lookup(f[0]) == nullptr);
  Tracked* s0 = a.Insert(f[0], 10);
  REQUIRE(s0 != nullptr);
  CHECK_EQ(reinterpret_cast<uintptr_t>(s0) % alignof(Tracked), 0u);
  CHECK(a.Lookup(f[0]) == s0);
  CHECK(a2.Lookup(f[0]) == s0);
  CHECK(a.Insert(f[0], 11) == nullptr);  // occupied: existing state kept
  CHECK_EQ(a.Lookup(f[0])->value, 10);
  CHECK(b.Insert(f[0], 7u) != nullptr);
  for (uint32_t i = 1; i < 4; i++) CHECK(a.Insert(f[i], static_cast<int>(i)) != nullptr);
  CHECK(a.Insert(f[4], 4) == nullptr);  // pool of 4 exhausted: caller counts it
  CHECK_EQ(g_live, 4);
  // Delete: hook + destructor, object back in the pool.
  CHECK(a.Delete(f[1]));
  CHECK(!a.Delete(f[1]));
  CHECK_EQ(g_live, 3);
  CHECK_EQ(g_hook_calls, 1);
  CHECK(a.Insert(f[4], 4) != nullptr);
  // Flow expiry releases every slot of the flow exactly once.
  reg.ReleaseFlow(f[0]);
  CHECK(a.Lookup(f[0]) == nullptr);
  CHECK(b.Lookup(f[0]) == nullptr);
  CHECK_EQ(g_live, 3);
  CHECK_EQ(g_hook_calls, 2);
  CHECK_EQ(reg.pool(b.handle())->available(), 100u);
  // Expiry through the table.
  t.ExpireSome(1000, 10, 8, [&](FlowEntry* e) { reg.ReleaseFlow(e); });
  CHECK_EQ(g_live, 0);
  CHECK_EQ(reg.pool(a.handle())->available(), 4u);
  // Size clash and slot exhaustion are refused.
  NfState<uint32_t> clash;
  CHECK(!clash.Init(&reg, "nf_a", 4));
  NfRegistry full;
  for (uint32_t i = 0; i < kMaxNfSlots; i++) {
    NfState<int> s;
    char name[8] = {'n', static_cast<char>('0' + i), 0};
    CHECK(s.Init(&full, name, 1));
  }
  NfState<int> extra;
  CHECK(!extra.Init(&full, "extra", 1));
}

TEST(object_pool_basics) {
  ObjectPool p;
  REQUIRE(p.Init(24, 8, 3));
  void* x = p.Alloc();
  void* y = p.Alloc();
  void* z = p.Alloc();
  CHECK(x && y && z);
  CHECK(p.Alloc() == nullptr);
  CHECK(p.Owns(x) && p.Owns(z));
  int local;
  CHECK(!p.Owns(&local));
  p.Free(y);
  CHECK(p.Alloc() == y);
  CHECK(!p.Init(24, 8, 3));  // once only
}

// The batch path (prefetch index slots, then entries, then hashed lookups)
// finds the same entries as FindOrInsert and inserts the new keys.
TEST(flow_table_batch_prefetch_lookup) {
  FlowTable t(256);
  bool ins;
  std::vector<FlowEntry*> first;
  for (uint32_t i = 0; i < 200; i++) first.push_back(t.FindOrInsert(Key(i), H(Key(i)), 5, &ins));
  uint32_t m[32];
  for (uint32_t j = 0; j < 32; j++) {
    m[j] = FlowTable::Mix(H(Key(184 + j)));
    t.PrefetchIndex(m[j]);
  }
  for (uint32_t j = 0; j < 32; j++) t.PrefetchEntry(m[j]);
  for (uint32_t j = 0; j < 32; j++) {
    const uint32_t i = 184 + j;
    FlowEntry* e = t.FindOrInsertMixed(Key(i), H(Key(i)), m[j], 7, &ins);
    REQUIRE(e != nullptr);
    CHECK(ins == (i >= 200));
    if (i < 200) CHECK(e == first[i]);
    CHECK(t.Lookup(Key(i), H(Key(i))) == e);
    CHECK(e->key == Key(i));
    CHECK_EQ(e->flow_hash, H(Key(i)));
  }
  CHECK_EQ(t.size(), 216u);
}
