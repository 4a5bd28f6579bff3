#include "net/reassembly.hpp"

#include <fmt/format.h>

#include <cstring>

#include "core/log.hpp"

namespace tessera::net {

void Reassembler::drop(Map::iterator it, const char* why) {
  ++dropped_;
  static log::RateLimit limit(5);
  if (uint64_t skipped = 0; limit.allow(&skipped)) {
    log::error("message {} in pieces dropped: {} ({} more not shown)", it->first.second, why,
               skipped);
  }
  bytes_ -= it->second.held();
  partials_.erase(it);
}

// Copies one chunk into its message; false if the chunk does not fit the message.
bool Reassembler::place(Partial& p, uint64_t off, std::span<const uint8_t> data) {
  if (off > p.total || data.size() > p.total - off) return false;
  std::memcpy(p.bulk.data() + off, data.data(), data.size());
  p.received += data.size();
  return p.received <= p.total;
}

std::optional<Message> Reassembler::add(DecodedFrame& fr) {
  auto key = std::make_pair(fr.pre.sender, fr.pre.msg_id);
  auto it = partials_.find(key);
  if (it == partials_.end()) {
    if (partials_.size() >= kMaxPartials) {
      ++dropped_;
      static log::RateLimit limit(5);
      if (uint64_t skipped = 0; limit.allow(&skipped)) {
        log::error("{} messages already in pieces; chunk dropped ({} more not shown)",
                   kMaxPartials, skipped);
      }
      return std::nullopt;
    }
    it = partials_.emplace(key, Partial{}).first;
    it->second.started = std::chrono::steady_clock::now();
  }
  Partial& p = it->second;
  const char* bad = nullptr;
  if (fr.pre.kind == FrameKind::first) {
    if (p.have_first) {
      bad = "a second first chunk";
    } else if (bytes_ - p.early_bytes + fr.bulk_total > budget_) {
      bad = "over the reassembly budget";
    } else {
      bytes_ = bytes_ - p.early_bytes + fr.bulk_total;
      p.have_first = true;
      p.total = fr.bulk_total;
      p.msg = std::move(fr.msg);
      p.bulk.reset(p.total);
      bool ok = place(p, 0, fr.bulk);
      for (auto& [off, data] : p.early) ok = ok && place(p, off, data.span());
      p.early.clear();
      p.early_bytes = 0;
      if (!ok) bad = "inconsistent chunks";
    }
  } else if (p.have_first) {
    if (!place(p, fr.pre.bulk_offset, fr.bulk)) bad = "inconsistent chunks";
  } else if (bytes_ + fr.bulk.size() > budget_) {
    bad = "over the reassembly budget";
  } else {
    p.early.emplace_back(fr.pre.bulk_offset, Buffer(fr.bulk.data(), fr.bulk.size()));
    p.early_bytes += fr.bulk.size();
    bytes_ += fr.bulk.size();
  }
  if (bad != nullptr) {
    drop(it, bad);
    return std::nullopt;
  }
  if (!p.have_first || p.received != p.total) return std::nullopt;
  p.msg.bulk = std::move(p.bulk);
  Message m = std::move(p.msg);
  bytes_ -= p.total;
  partials_.erase(it);
  return m;
}

void Reassembler::expire(std::chrono::steady_clock::time_point now,
                         std::chrono::steady_clock::duration age) {
  for (auto it = partials_.begin(); it != partials_.end();) {
    if (now - it->second.started > age) {
      ++dropped_;
      bytes_ -= it->second.held();
      it = partials_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace tessera::net
