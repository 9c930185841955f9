// Fixed-capacity single-producer / single-consumer ring.
//
// Used for the per-core RX queues of the software dispatcher in tests, the
// offload rings (working core -> offloading core) and the per-shard hand-off
// buffer at a shard's new owner. Storage is allocated once at construction;
// Enqueue/Dequeue never allocate and never block: a full ring returns a short
// count and the caller counts the drop.
//
// Thread rules: exactly one producer thread and one consumer thread at a time.
// A change of producer or consumer must be ordered by a release/acquire
// hand-off outside the ring (see migration.h).
#ifndef DYSSECT_SPSC_RING_H_
#define DYSSECT_SPSC_RING_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "common.h"

namespace dyssect {

template <typename T>
class SpscRing {
 public:
  // capacity is rounded up to a power of two (minimum 2).
  explicit SpscRing(uint32_t capacity)
      : cap_(static_cast<uint32_t>(NextPowerOfTwo(capacity < 2 ? 2 : capacity))),
        mask_(cap_ - 1),
        slots_(new T[cap_]()) {}

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  uint32_t capacity() const { return cap_; }

  // Items queued, for stats from any thread. Reads the consumer index first:
  // an item the consumer takes during the call is still counted, never one
  // that was already gone.
  uint32_t SizeApprox() const {
    const uint32_t h = head_.load(std::memory_order_acquire);
    const uint32_t t = tail_.load(std::memory_order_acquire);
    return t - h;
  }

  // Producer side. Returns false when full (item not stored).
  bool Enqueue(const T& item) {
    const uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_cache_ == cap_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (t - head_cache_ == cap_) return false;
    }
    slots_[t & mask_] = item;
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Producer side. Stores as many of items[0..n) as fit, in order; returns that count.
  uint32_t EnqueueBurst(const T* items, uint32_t n) {
    const uint32_t t = tail_.load(std::memory_order_relaxed);
    uint32_t free_slots = cap_ - (t - head_cache_);
    if (free_slots < n) {
      head_cache_ = head_.load(std::memory_order_acquire);
      free_slots = cap_ - (t - head_cache_);
    }
    const uint32_t k = n < free_slots ? n : free_slots;
    for (uint32_t i = 0; i < k; i++) slots_[(t + i) & mask_] = items[i];
    tail_.store(t + k, std::memory_order_release);
    return k;
  }

  // Consumer side. Returns false when empty.
  bool Dequeue(T* out) {
    const uint32_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h == tail_cache_) return false;
    }
    *out = slots_[h & mask_];
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

  // Consumer side. Dequeues up to n items in order; returns the count.
  uint32_t DequeueBurst(T* out, uint32_t n) {
    const uint32_t h = head_.load(std::memory_order_relaxed);
    uint32_t avail = tail_cache_ - h;
    if (avail < n) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      avail = tail_cache_ - h;
    }
    const uint32_t k = n < avail ? n : avail;
    for (uint32_t i = 0; i < k; i++) out[i] = slots_[(h + i) & mask_];
    head_.store(h + k, std::memory_order_release);
    return k;
  }

  // Consumer side: look at the oldest item without removing it.
  bool Peek(T* out) {
    const uint32_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h == tail_cache_) return false;
    }
    *out = slots_[h & mask_];
    return true;
  }

  // Approximate from any thread; exact from the consumer (lower bound) or the
  // producer (upper bound).
  uint32_t Count() const {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire);
  }
  bool Empty() const { return Count() == 0; }

 private:
  const uint32_t cap_;
  const uint32_t mask_;
  std::unique_ptr<T[]> slots_;
  // Producer-owned line: tail plus its cached copy of head.
  alignas(kCacheLine) std::atomic<uint32_t> tail_{0};
  uint32_t head_cache_ = 0;
  // Consumer-owned line: head plus its cached copy of tail.
  alignas(kCacheLine) std::atomic<uint32_t> head_{0};
  uint32_t tail_cache_ = 0;
};

}  // namespace dyssect

#endif  // DYSSECT_SPSC_RING_H_
