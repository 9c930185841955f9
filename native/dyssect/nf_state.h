// The NF state API for chain authors (see docs/nf-api.md for the contract).
//
//   NfRegistry registry;                       // one per pipeline (shard manager)
//   NfState<MyState> st;
//   st.Init(&registry, "my_nf", capacity);     // at module Init: reserves a slot (the handle)
//   MyState* s = st.Lookup(flow);              // fast path: nullptr if none
//   s = st.Insert(flow, args...);              // constructs MyState in a pool object
//   st.Delete(flow);                           // destroys it, returns it to the pool
//
// Ownership: state objects live in a pool preallocated by Init (one pool per
// NF slot). Insert constructs in place, Delete and flow expiry run the
// release hook, the destructor and return the object to that same pool: no
// malloc/free on the fast path and no mismatched free (the original called
// C++ delete on rte_malloc'd memory).
//
// Lifetime: from Insert until Delete or until the flow expires (idle
// timeout), whichever comes first. On expiry the flow table's owner calls
// NfRegistry::ReleaseFlow, which runs each slot's release hook exactly once.
//
// Thread rules: a flow's state is touched only by the core that currently
// processes the flow: the shard owner for a local flow, the offloading core
// for an offloaded one. The migration protocol (migration.h) guarantees these
// never overlap: reclassification and shard hand-off wait for the flow's
// in-flight packets. The pools themselves are lock-free (MPMC), because
// Insert may run on a working or an offloading core and expiry on the owner.
#ifndef DYSSECT_NF_STATE_H_
#define DYSSECT_NF_STATE_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "common.h"
#include "flow_table.h"

namespace dyssect {

// Lock-free fixed-size object pool: a Treiber stack of object indices with a
// 32-bit ABA tag packed next to the head index in one 64-bit word.
class ObjectPool {
 public:
  static constexpr uint32_t kNil = 0xFFFFFFFFu;

  ObjectPool() = default;
  ObjectPool(const ObjectPool&) = delete;
  ObjectPool& operator=(const ObjectPool&) = delete;
  ~ObjectPool() { std::free(mem_); }

  // Allocates capacity objects of object_size bytes aligned to align (a power
  // of two <= 4096). Init time only. Returns false on bad arguments or OOM.
  bool Init(uint32_t object_size, uint32_t align, uint32_t capacity) {
    if (mem_ != nullptr || capacity == 0 || capacity == kNil || !IsPowerOfTwo(align) ||
        align > 4096)
      return false;
    if (align < alignof(std::max_align_t)) align = alignof(std::max_align_t);
    stride_ = (object_size + align - 1) / align * align;
    if (stride_ == 0) stride_ = align;
    const size_t bytes = static_cast<size_t>(stride_) * capacity;
    mem_ = static_cast<uint8_t*>(std::aligned_alloc(align, (bytes + align - 1) / align * align));
    if (mem_ == nullptr) return false;
    std::memset(mem_, 0, bytes);
    next_.reset(new std::atomic<uint32_t>[capacity]);
    for (uint32_t i = 0; i < capacity; i++)
      next_[i].store(i + 1 < capacity ? i + 1 : kNil, std::memory_order_relaxed);
    capacity_ = capacity;
    head_.store(Pack(0, 0), std::memory_order_release);
    available_.store(capacity, std::memory_order_relaxed);
    return true;
  }

  // nullptr when empty.
  void* Alloc() {
    uint64_t old = head_.load(std::memory_order_acquire);
    while (true) {
      const uint32_t idx = Idx(old);
      if (idx == kNil) return nullptr;
      const uint32_t nxt = next_[idx].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(old, Pack(nxt, Tag(old) + 1), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        available_.fetch_sub(1, std::memory_order_relaxed);
        return mem_ + static_cast<size_t>(stride_) * idx;
      }
    }
  }

  // p must come from Alloc() of this pool and not be freed twice.
  void Free(void* p) {
    const uint32_t idx = IndexOf(p);
    uint64_t old = head_.load(std::memory_order_relaxed);
    while (true) {
      next_[idx].store(Idx(old), std::memory_order_relaxed);
      if (head_.compare_exchange_weak(old, Pack(idx, Tag(old) + 1), std::memory_order_release,
                                      std::memory_order_relaxed)) {
        available_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }

  bool Owns(const void* p) const {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    return mem_ != nullptr && b >= mem_ && b < mem_ + static_cast<size_t>(stride_) * capacity_ &&
           (b - mem_) % stride_ == 0;
  }
  uint32_t IndexOf(const void* p) const {
    return static_cast<uint32_t>((static_cast<const uint8_t*>(p) - mem_) / stride_);
  }
  uint32_t capacity() const { return capacity_; }
  uint32_t available() const { return available_.load(std::memory_order_relaxed); }

 private:
  static uint64_t Pack(uint32_t idx, uint32_t tag) {
    return (static_cast<uint64_t>(tag) << 32) | idx;
  }
  static uint32_t Idx(uint64_t v) { return static_cast<uint32_t>(v); }
  static uint32_t Tag(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

  uint8_t* mem_ = nullptr;
  uint32_t stride_ = 0;
  uint32_t capacity_ = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> next_;
  alignas(kCacheLine) std::atomic<uint64_t> head_{Pack(kNil, 0)};
  std::atomic<uint32_t> available_{0};
};

// Per-pipeline table of NF slots. Register at init (not thread-safe); the
// fast-path methods are safe under the thread rules above.
class NfRegistry {
 public:
  // Called with the state object just before it is destroyed and returned to
  // the pool (Delete or expiry). Runs on the thread doing the delete/expiry.
  using ReleaseHook = void (*)(void* ctx, void* obj);
  using Destroy = void (*)(void* obj);

  // Registering the same name again returns the same handle (the NF at one
  // chain position exists once per core; all instances share the slot and
  // pool). Returns -1 when all kMaxNfSlots are taken or the size differs.
  int Register(const char* name, uint32_t object_size, uint32_t align, uint32_t capacity,
               Destroy destroy) {
    for (uint32_t i = 0; i < count_; i++) {
      if (std::strncmp(slots_[i].name, name, sizeof(slots_[i].name)) == 0)
        return slots_[i].object_size == object_size ? static_cast<int>(i) : -1;
    }
    if (count_ == kMaxNfSlots) return -1;
    Slot& s = slots_[count_];
    std::strncpy(s.name, name, sizeof(s.name) - 1);
    s.name[sizeof(s.name) - 1] = '\0';
    s.object_size = object_size;
    s.destroy = destroy;
    if (!s.pool.Init(object_size, align, capacity)) return -1;
    return static_cast<int>(count_++);
  }

  // Adds a release hook to a slot (e.g. the NAT returns its port). One hook
  // per slot; the last call wins. Init time only.
  void SetReleaseHook(int handle, ReleaseHook hook, void* ctx) {
    slots_[handle].hook = hook;
    slots_[handle].hook_ctx = ctx;
  }

  uint32_t count() const { return count_; }
  ObjectPool* pool(int handle) { return &slots_[handle].pool; }

  // Runs hook + destructor and returns the object of slot h of flow f to its
  // pool. Returns false if the slot was empty.
  bool ReleaseSlot(FlowEntry* f, int h) {
    void* obj = f->nf_state[h];
    if (obj == nullptr) return false;
    f->nf_state[h] = nullptr;
    Slot& s = slots_[h];
    if (s.hook != nullptr) s.hook(s.hook_ctx, obj);
    if (s.destroy != nullptr) s.destroy(obj);
    s.pool.Free(obj);
    s.releases.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Releases every NF state of a flow (flow expiry or teardown).
  void ReleaseFlow(FlowEntry* f) {
    for (uint32_t h = 0; h < count_; h++) ReleaseSlot(f, static_cast<int>(h));
  }

  uint64_t releases(int h) const { return slots_[h].releases.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    char name[32] = {};
    uint32_t object_size = 0;
    Destroy destroy = nullptr;
    ReleaseHook hook = nullptr;
    void* hook_ctx = nullptr;
    ObjectPool pool;
    std::atomic<uint64_t> releases{0};
  };
  Slot slots_[kMaxNfSlots];
  uint32_t count_ = 0;
};

// Typed front end: one per NF module instance (the handle is shared by name).
template <typename T>
class NfState {
 public:
  // Reserves (or joins) the slot `name` with a pool of `capacity` objects.
  // Returns false on failure (no free slot, size clash, OOM).
  bool Init(NfRegistry* reg, const char* name, uint32_t capacity) {
    reg_ = reg;
    handle_ = reg->Register(name, sizeof(T), alignof(T), capacity,
                            [](void* obj) { static_cast<T*>(obj)->~T(); });
    return handle_ >= 0;
  }

  int handle() const { return handle_; }

  // nullptr if the flow has no state for this NF.
  T* Lookup(FlowEntry* f) const { return static_cast<T*>(f->nf_state[handle_]); }

  // Constructs T(args...) in a pool object and stores it in the flow's slot.
  // nullptr if the slot is already occupied (the existing state is kept) or
  // the pool is empty; the caller counts that and decides (drop or pass).
  template <typename... Args>
  T* Insert(FlowEntry* f, Args&&... args) {
    if (f->nf_state[handle_] != nullptr) return nullptr;
    void* mem = reg_->pool(handle_)->Alloc();
    if (mem == nullptr) return nullptr;
    T* obj = new (mem) T(std::forward<Args>(args)...);
    f->nf_state[handle_] = obj;
    return obj;
  }

  // Runs the release hook and ~T, returns the object to the pool and clears
  // the slot. false if there was no state. The flow itself stays in the table.
  bool Delete(FlowEntry* f) { return reg_->ReleaseSlot(f, handle_); }

 private:
  NfRegistry* reg_ = nullptr;
  int handle_ = -1;
};

}  // namespace dyssect

#endif  // DYSSECT_NF_STATE_H_
