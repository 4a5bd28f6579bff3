// The operations a FabricEndpoint has handed to the provider, and how their completions are
// told apart from anything else the provider may report.
//
// Every fi_sendv and fi_recv carries an OpBase's `ctx` as its context, and libfabric hands the
// context back in the completion. A successful completion always names one of ours; an error
// completion need not: rxm (libfabric 1.17) reports a rendezvous it failed to start with its own
// receive buffer as the context, and errors it cannot attribute with none. So a context is only
// used once it is found among the live operations (SendList::contains, RecvSlots::find).
//
// A receive that completed with an error may not be over. rxm over tcp reads a large message
// from its sender with one read per entry of the sender's iovec, and a dead connection fails
// each read: one posting reports two errors. Posting the context again after the first would
// leave it posted twice, and two messages would land in one buffer. So a failed receive is
// retired for good, later completions of it are recognised and ignored, and a fresh RecvSlot
// takes its place.
//
// No libfabric header here: `ctx` has fi_context2's layout (fabric.cpp checks it), so the
// bookkeeping is tested on its own (tests/unit/net/fabric_ops_test.cpp).
//
// Runs on: the endpoint's owning target thread only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <unordered_set>
#include <vector>

#include "core/buffer.hpp"

namespace tessera::net {

enum class OpKind { send, recv };

struct OpBase {
  void* ctx[8] = {};  // libfabric's fi_context2; must stay first (&ctx is the op context)
  OpKind kind = OpKind::send;
};

struct SendOp : OpBase {
  Buffer head;
  std::shared_ptr<Buffer> bulk;
  size_t bulk_off = 0;
  size_t bulk_len = 0;
  SendOp* prev = nullptr;  // SendList
  SendOp* next = nullptr;
};

struct RecvSlot : OpBase {
  Buffer buf;
  bool retired = false;
  std::chrono::steady_clock::time_point last_heard{};  // retired: its last completion
};

// The sends the provider holds, each until its completion. Owns them.
class SendList {
 public:
  SendList() = default;
  SendList(const SendList&) = delete;
  SendList& operator=(const SendList&) = delete;
  ~SendList() {
    while (head_ != nullptr) take(head_);  // freed here (their endpoint is closed)
  }
  void add(std::unique_ptr<SendOp> op) {
    SendOp* p = op.release();
    p->prev = nullptr;
    p->next = head_;
    if (head_ != nullptr) head_->prev = p;
    head_ = p;
    ++size_;
  }
  // Removes `op` (one of ours) and hands it back.
  std::unique_ptr<SendOp> take(SendOp* op) {
    if (op->prev != nullptr) op->prev->next = op->next;
    if (op->next != nullptr) op->next->prev = op->prev;
    if (head_ == op) head_ = op->next;
    op->prev = op->next = nullptr;
    --size_;
    return std::unique_ptr<SendOp>(op);
  }
  // Whether `ctx` is a send of ours (a walk: for error completions only).
  SendOp* find(const void* ctx) const {
    for (SendOp* p = head_; p != nullptr; p = p->next) {
      if (static_cast<const void*>(p) == ctx) return p;
    }
    return nullptr;
  }
  size_t size() const { return size_; }

 private:
  SendOp* head_ = nullptr;
  size_t size_ = 0;
};

// The receive buffers: active ones (posted, or waiting for room in the provider's queue) and
// retired ones.
//
// Bounds: a retired slot keeps its buffer (the memory a failed read may still have been
// writing) until nothing was heard of it for `quiet`, and at most `max_buffers` retired buffers
// are kept (the oldest freed first); at most `max_retired` retired contexts are remembered. A
// stream of dying peers costs bounded memory.
class RecvSlots {
 public:
  struct Limits {
    std::chrono::steady_clock::duration quiet = std::chrono::seconds(5);
    size_t max_buffers = 32;
    size_t max_retired = 4096;
  };
  explicit RecvSlots(size_t frame) : RecvSlots(frame, Limits()) {}
  RecvSlots(size_t frame, Limits limits) : frame_(frame), limits_(limits) {}

  // A new active slot with a fresh buffer of `frame` bytes.
  RecvSlot* add() {
    auto s = std::make_unique<RecvSlot>();
    s->kind = OpKind::recv;
    s->buf.reset(frame_);
    RecvSlot* p = s.get();
    active_.push_back(std::move(s));
    known_.insert(p);
    return p;
  }

  // The slot whose context `ctx` is, active or retired; nullptr if it is none of ours.
  RecvSlot* find(const void* ctx) const {
    auto it = known_.find(ctx);
    return it == known_.end() ? nullptr : static_cast<RecvSlot*>(const_cast<void*>(*it));
  }

  // `s` (active) failed: never posted again. Returns whether it was active.
  bool retire(RecvSlot* s, std::chrono::steady_clock::time_point now) {
    auto it =
        std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == s; });
    if (it == active_.end()) return false;
    s->retired = true;
    s->last_heard = now;
    retired_.push_back(std::move(*it));
    active_.erase(it);
    unposted_.erase(std::remove(unposted_.begin(), unposted_.end(), s), unposted_.end());
    holding_.push_back(s);
    trim(now);
    return true;
  }

  // A completion of retired slot `s` arrived (ignored, but it shows the slot is not quiet).
  void heard(RecvSlot* s, std::chrono::steady_clock::time_point now) { s->last_heard = now; }

  // Frees what the bounds allow; cheap (a walk of at most max_buffers + 1 slots).
  void trim(std::chrono::steady_clock::time_point now) {
    while (holding_.size() > limits_.max_buffers) {
      holding_.front()->buf = Buffer();
      holding_.pop_front();
    }
    std::erase_if(holding_, [&](RecvSlot* s) {
      if (now - s->last_heard < limits_.quiet) return false;
      s->buf = Buffer();
      return true;
    });
    while (retired_.size() > limits_.max_retired) {
      RecvSlot* s = retired_.front().get();
      std::erase(holding_, s);
      known_.erase(s);
      retired_.pop_front();
    }
  }
  // Slots to post once the provider's receive queue has room.
  void defer(RecvSlot* s) { unposted_.push_back(s); }
  std::vector<RecvSlot*> take_deferred() { return std::exchange(unposted_, {}); }
  bool has_deferred() const { return !unposted_.empty(); }

  size_t active() const { return active_.size(); }
  size_t posted() const { return active_.size() - unposted_.size(); }
  size_t retired() const { return retired_.size(); }
  size_t retired_buffers() const { return holding_.size(); }

 private:
  size_t frame_;
  Limits limits_;
  std::vector<std::unique_ptr<RecvSlot>> active_;
  std::deque<std::unique_ptr<RecvSlot>> retired_;  // oldest first
  std::unordered_set<const void*> known_;          // every slot in active_ and retired_
  std::vector<RecvSlot*> unposted_;
  std::deque<RecvSlot*> holding_;  // retired slots still holding their buffer, oldest first
};

}  // namespace tessera::net
